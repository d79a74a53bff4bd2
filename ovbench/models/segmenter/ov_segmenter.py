"""A trained segmenter as a :class:`~ovbench.models.api.SemanticSegmenter`, and its model file.

A model file (``model.pt``, written by ``ovbench train``) holds the :class:`SegmenterSpec`, the names
the classifier was trained with, the network's weights and a short training summary; the CLIP named
in the spec supplies the text embeddings at prediction time. Model config: ``{"kind": "segmenter",
"checkpoint": PATH}``, optionally with ``"clip"`` to point the text encoder at another local file.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from ovbench.errors import OvbenchError
from ovbench.models.api import Batch, StagedSegmenter, check_image
from ovbench.models.clip import Clip, text_tower
from ovbench.models.segmenter.inference import max_pool_names
from ovbench.models.segmenter.model import Segmenter
from ovbench.models.segmenter.spec import SegmenterSpec, build_segmenter, normalize_images
from ovbench.models.zoo import clip_from_config, register_model
from ovbench.records.store import atomic_write

MODEL_FORMAT = "ovbench-segmenter/1"


class OVSegmenter(StagedSegmenter):
    """``net`` (a :class:`Segmenter`) classifying against ``clip``'s text embeddings of the vocabulary.

    ``training_names``: the class names the classifier was trained with (used by the two-stage
    baseline to tell seen from unseen classes). Stages: ``preprocess`` resizes (``spec.test_short_side``),
    normalises and pads to ``spec.size_divisibility``; ``forward`` is the network with the class
    logits max-pooled over each class's names; ``postprocess`` upsamples the masks to the image and
    takes the arg-max of Σ_q softmax(class) · sigmoid(mask).
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
        self._text = self.clip.encode_text([n for n, _ in flat], self.spec.template).to(self.device)
        self._name_to_class = [k for _, k in flat]
        self._num_classes = len(class_names)

    def towers(self) -> dict[str, list[nn.Module]]:
        """The network (its trunk included) per image; CLIP's text tower for the vocabulary."""
        return {"image": [self.net], "text": [text_tower(self.clip)]}

    def to(self, device: torch.device | str) -> "OVSegmenter":
        self.net.to(device)
        self.clip.to(device)
        if self._text is not None:
            self._text = self._text.to(device)
        return self

    def clear_text_cache(self) -> None:
        self.clip.clear_text_cache()

    def preprocess(self, image: np.ndarray) -> Batch:
        """``{"images": (1, 3, H', W') float32 normalised and padded, "valid_size": (h', w')}`` where
        ``(h', w')`` is the resized image inside the padding."""
        check_image(image, self.name)
        h, w = image.shape[:2]
        x = torch.from_numpy(np.array(image, copy=True)).to(self.device).permute(2, 0, 1)[None]
        if self.spec.test_short_side is not None:
            factor = self.spec.test_short_side / min(h, w)
            if self.spec.test_max_size is not None:
                factor = min(factor, self.spec.test_max_size / max(h, w))
            x = F.interpolate(x.float(), size=(round(h * factor), round(w * factor)), mode="bilinear",
                              align_corners=False)
        x = normalize_images(x, self.spec.normalization)
        rh, rw = x.shape[-2:]
        d = self.spec.size_divisibility
        return {"images": F.pad(x, (0, (-rw) % d, 0, (-rh) % d)), "valid_size": (int(rh), int(rw))}

    @torch.no_grad()
    def forward(self, inputs: Batch) -> Batch:
        """``{"logits": (B, Q, K + 1) names max-pooled per class, void last; "masks": (B, Q, H'/4, W'/4)
        mask logits; "input_size", "valid_size"}``."""
        if self._text is None:
            raise OvbenchError("call set_vocabulary() before predicting")
        images = inputs["images"]
        out = self.net(images, self._text)
        logits = out["pred_logits"]
        merged = max_pool_names(logits[..., :-1], self._name_to_class, self._num_classes, dim=-1)
        return {"logits": torch.cat([merged, logits[..., -1:]], dim=-1), "masks": out["pred_masks"],
                "input_size": tuple(images.shape[-2:]), "valid_size": inputs["valid_size"]}

    @torch.no_grad()
    def mask_probabilities(self, outputs: Batch, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities ``(B, Q, K)`` (softmax over K classes + void, void dropped) and mask
        probabilities ``(B, Q, H, W)`` (sigmoid) at ``image_size``, float32 on the model's device."""
        rh, rw = outputs["valid_size"]
        masks = F.interpolate(outputs["masks"].float(), size=outputs["input_size"], mode="bilinear",
                              align_corners=False)[..., :rh, :rw]
        if (rh, rw) != tuple(image_size):
            masks = F.interpolate(masks, size=tuple(image_size), mode="bilinear", align_corners=False)
        return outputs["logits"].float().softmax(-1)[..., :-1], masks.sigmoid()

    def mask_scores(self, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`mask_probabilities` of one image, ``(Q, K)`` and ``(Q, H, W)`` on the CPU."""
        probs, masks = self.mask_probabilities(self.forward(self.preprocess(image)), image.shape[:2])
        return probs[0].cpu(), masks[0].cpu()

    def postprocess(self, outputs: Batch, image_size: tuple[int, int]) -> list[np.ndarray]:
        probs, masks = self.mask_probabilities(outputs, image_size)
        labels = torch.einsum("bqk,bqhw->bkhw", probs, masks).argmax(1)
        return list(labels.cpu().numpy().astype(np.int64))

    def counters(self) -> dict[str, int]:
        """No CLIP image-encoder forward ever runs: the classifier compares query embeddings with
        (cached) text embeddings."""
        return {"clip_image_forwards": 0}


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


def random_segmenter(spec: SegmenterSpec, base_dir: Path | str = ".", name: str = "segmenter",
                     device: str = "cpu") -> OVSegmenter:
    """The segmenter of ``spec`` with random weights everywhere (CLIP and trunk too) and no training
    names: what ``ovbench profile`` times (speed does not depend on weights)."""
    spec = dataclasses.replace(spec, clip={**spec.clip, "pretrained": None}, trunk_weights=None)
    clip = clip_from_config(spec.clip, base_dir, device=device)
    return OVSegmenter(build_segmenter(spec, clip, base_dir).to(device), clip, spec, (), name=name)


def spec_from_config(spec: Mapping[str, Any] | str, base_dir: Path) -> tuple[SegmenterSpec, str]:
    """``(spec, run name)`` from a ``spec`` entry: a run config's path (its ``model`` section and
    ``name``) or a model section inline (name ``segmenter``)."""
    if isinstance(spec, Mapping):
        return SegmenterSpec.from_dict(spec), "segmenter"
    path = Path(spec).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise OvbenchError(f"{path}: run config not found (the segmenter's 'spec')")
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, Mapping) or not isinstance(raw.get("model"), Mapping):
        raise OvbenchError(f"{path}: a segmenter 'spec' names a run config with a 'model' section")
    return SegmenterSpec.from_dict(raw["model"]), str(raw.get("name", path.stem))


@register_model("segmenter")
def build_from_config(config: Mapping[str, Any], base_dir: Path) -> OVSegmenter:
    """``{"kind": "segmenter", "checkpoint": PATH, "clip": {...} (optional), "name": str (optional)}``, or
    with ``"spec"`` (a run config's path or a model section) instead of a checkpoint: that architecture
    with random weights (for ``ovbench profile``). With both, the checkpoint is used and ``spec``
    names the architecture for random-weight profiling."""
    unknown = sorted(set(config) - {"kind", "checkpoint", "spec", "clip", "name"})
    if unknown or not ({"checkpoint", "spec"} & set(config)):
        raise OvbenchError(f"a segmenter model config needs 'checkpoint' (a model.pt) or 'spec' (a run config, "
                           f"random weights) and may have 'clip', 'name'; unknown: {unknown}")
    if "checkpoint" not in config:
        spec, run_name = spec_from_config(config["spec"], base_dir)
        if "clip" in config:
            spec = dataclasses.replace(spec, clip=dict(config["clip"]))
        return random_segmenter(spec, base_dir, name=config.get("name", run_name))
    path = Path(config["checkpoint"]).expanduser()
    return load_model_file(path if path.is_absolute() else base_dir / path, config.get("clip"), base_dir,
                           name=config.get("name"))
