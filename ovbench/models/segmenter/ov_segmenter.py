"""A trained segmenter as a :class:`~ovbench.models.api.SemanticSegmenter`, and its model file.

A model file (``model.pt``, written by ``ovbench train``) holds the :class:`SegmenterSpec`, the names
the classifier was trained with, the network's weights and a short training summary; the CLIP named
in the spec supplies the text embeddings at prediction time. Model config: ``{"kind": "segmenter",
"checkpoint": PATH}``, optionally with ``"clip"`` to point the text encoder at another local file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ovbench.errors import OvbenchError
from ovbench.models.api import SemanticSegmenter
from ovbench.models.clip import Clip
from ovbench.models.segmenter.inference import max_pool_names
from ovbench.models.segmenter.model import Segmenter
from ovbench.models.segmenter.spec import SegmenterSpec, build_segmenter, normalize_images
from ovbench.models.zoo import clip_from_config, register_model
from ovbench.records.store import atomic_write

MODEL_FORMAT = "ovbench-segmenter/1"


class OVSegmenter(SemanticSegmenter):
    """``net`` (a :class:`Segmenter`) classifying against ``clip``'s text embeddings of the vocabulary.

    ``training_names``: the class names the classifier was trained with (used by the two-stage
    baseline to tell seen from unseen classes).
    """

    def __init__(self, net: Segmenter, clip: Clip, spec: SegmenterSpec, training_names: Sequence[str],
                 name: str = "segmenter") -> None:
        self.net, self.clip, self.spec, self.name = net.eval(), clip, spec, name
        self.training_names = frozenset(training_names)
        self._text: torch.Tensor | None = None
        self._name_to_class: list[int] = []
        self._num_classes = 0

    def set_vocabulary(self, class_names: Sequence[Sequence[str]]) -> None:
        flat = [(n, k) for k, names in enumerate(class_names) for n in names]
        if not flat or any(not names for names in class_names):
            raise OvbenchError("every class of the vocabulary needs at least one name")
        self._text = self.clip.encode_text([n for n, _ in flat], self.spec.template)
        self._name_to_class = [k for _, k in flat]
        self._num_classes = len(class_names)

    @torch.no_grad()
    def _outputs(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``(Q, K + 1)`` (names max-pooled per class, void last) and mask logits
        ``(Q, H, W)`` at the image's size, for a uint8 ``(H, W, 3)`` image."""
        if self._text is None:
            raise OvbenchError("call set_vocabulary() before predicting")
        h, w = image.shape[:2]
        x = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1)[None]
        if self.spec.test_short_side is not None:
            factor = self.spec.test_short_side / min(h, w)
            if self.spec.test_max_size is not None:
                factor = min(factor, self.spec.test_max_size / max(h, w))
            x = F.interpolate(x.float(), size=(round(h * factor), round(w * factor)), mode="bilinear",
                              align_corners=False)
        x = normalize_images(x, self.spec.normalization)
        rh, rw = x.shape[-2:]
        d = self.spec.size_divisibility
        x = F.pad(x, (0, (-rw) % d, 0, (-rh) % d))
        device = next(self.net.parameters()).device
        out = self.net(x.to(device), self._text.to(device))
        logits = out["pred_logits"][0]
        merged = max_pool_names(logits[:, :-1], self._name_to_class, self._num_classes, dim=-1)
        masks = F.interpolate(out["pred_masks"], size=x.shape[-2:], mode="bilinear", align_corners=False)
        masks = masks[..., :rh, :rw]
        if (rh, rw) != (h, w):
            masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)
        return torch.cat([merged, logits[:, -1:]], dim=-1).float().cpu(), masks[0].float().cpu()

    def mask_scores(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities ``(Q, K)`` (softmax over K classes + void, void dropped) and mask
        probabilities ``(Q, H, W)`` (sigmoid) at the image's size."""
        logits, masks = self._outputs(image)
        return logits.softmax(-1)[:, :-1], masks.sigmoid()

    def counters(self) -> dict[str, int]:
        """No CLIP image-encoder forward ever runs: the classifier compares query embeddings with
        (cached) text embeddings."""
        return {"clip_image_forwards": 0}

    def predict(self, image: np.ndarray) -> np.ndarray:
        probs, masks = self.mask_scores(image)
        return torch.einsum("qk,qhw->khw", probs, masks).argmax(0).numpy().astype(np.int64)


def save_model_file(path: Path | str, net: Segmenter, spec: SegmenterSpec, training_names: Sequence[str],
                    summary: Mapping[str, Any]) -> Path:
    """Write a model file atomically (see the module docstring)."""
    state = {"format": MODEL_FORMAT, "spec": spec.to_dict(), "training_names": list(training_names),
             "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}, "summary": dict(summary)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(state, f))
    return path


def read_model_file(path: Path | str) -> dict[str, Any]:
    """The contents of a model file, checked; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise OvbenchError(f"{path}: model file not found; train one with `ovbench train CONFIG` (it writes "
                           f"OUTPUT/model.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise OvbenchError(f"{path}: not a readable model file ({type(e).__name__}); re-run `ovbench train`") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise OvbenchError(f"{path}: not an ovbench segmenter model file (format {MODEL_FORMAT}); a training "
                           f"checkpoint_*.pt is not one either: use OUTPUT/model.pt")
    return state


def load_model_file(path: Path | str, clip_override: Mapping[str, Any] | None = None, base_dir: Path | str = ".",
                    device: str = "cpu", name: str | None = None) -> OVSegmenter:
    """An :class:`OVSegmenter` from a model file; ``clip_override`` replaces the spec's CLIP config;
    ``name`` defaults to the run's name stored in the file."""
    state = read_model_file(path)
    spec = SegmenterSpec.from_dict(state["spec"])
    clip_config = clip_override if clip_override is not None else spec.clip
    clip = clip_from_config(clip_config, base_dir, device=device)
    net = build_segmenter(spec, clip, base_dir)
    net.load_state_dict(state["state_dict"])
    name = name or str(state.get("summary", {}).get("name", "segmenter"))
    return OVSegmenter(net.to(device), clip, spec, state["training_names"], name=name)


@register_model("segmenter")
def build_from_config(config: Mapping[str, Any], base_dir: Path) -> OVSegmenter:
    """``{"kind": "segmenter", "checkpoint": PATH, "clip": {...} (optional), "name": str (optional)}``."""
    unknown = sorted(set(config) - {"kind", "checkpoint", "clip", "name"})
    if unknown or "checkpoint" not in config:
        raise OvbenchError(f"a segmenter model config needs 'checkpoint' (a model.pt) and may have 'clip', "
                           f"'name'; unknown: {unknown}")
    path = Path(config["checkpoint"]).expanduser()
    return load_model_file(path if path.is_absolute() else base_dir / path, config.get("clip"), base_dir,
                           name=config.get("name"))
