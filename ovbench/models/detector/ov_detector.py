"""A trained detector with a swappable vocabulary (:class:`OVDetector`), and its model file.

A detector model file (``model.pt``, written by ``ovbench train`` for ``kind: detector`` run configs) is a
dict ``{"format": "ovbench-detector/1", "spec": DetectorSpec.to_dict(), "training_names": [str],
"state_dict": {...}, "summary": {...}}``; the CLIP named in the spec embeds the test vocabulary. A model
config ``{kind: detector, checkpoint: PATH, clip: {...} (optional), name: str (optional)}`` points at one.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import yaml

from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip
from ovbench.models.detector.model import OVMaskRCNN, build_detector
from ovbench.models.detector.spec import DetectorSpec
from ovbench.models.zoo import clip_from_config
from ovbench.records.store import atomic_write

MODEL_FORMAT = "ovbench-detector/1"


@dataclass(frozen=True)
class Detection:
    """One detection: ``box`` xyxy in pixels of the input image, ``score`` in [0, 1], ``label`` the index
    of its class in the vocabulary, ``mask`` a bool ``(H, W)`` array of the whole image (mask head only)."""

    box: tuple[float, float, float, float]
    score: float
    label: int
    mask: np.ndarray | None = None


class OVDetector:
    """``net`` detecting the classes of a vocabulary embedded by ``clip``'s text tower.

    ``training_names``: the class names the classifier was trained with. :meth:`set_vocabulary` embeds
    every name of every class under ``spec.template``; a class's logit is the max over its names; a class
    with a training name is seen (weighted towards the text branch by the ViLD ensemble), others are novel.
    """

    def __init__(self, net: OVMaskRCNN, clip: Clip, spec: DetectorSpec, training_names: Sequence[str],
                 name: str = "detector") -> None:
        self.net, self.clip, self.spec, self.name = net.eval(), clip, spec, name
        self.training_names = tuple(training_names)
        self.num_classes = 0

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: torch.device | str) -> "OVDetector":
        """Move the network and the CLIP to ``device``; returns ``self``."""
        self.net.to(device)
        self.clip.to(device)
        return self

    def set_vocabulary(self, class_names: Sequence[Sequence[str]]) -> None:
        """The K test classes in order, each as one or more names; label ``k`` of :meth:`predict` is class ``k``."""
        flat = [(n, k) for k, names in enumerate(class_names) for n in names]
        if not flat or any(not names for names in class_names):
            raise OvbenchError("every class of the vocabulary needs at least one name")
        seen = [any(n in self.training_names for n in names) for names in class_names]
        self.net.set_text(self.clip.encode_text([n for n, _ in flat], self.spec.template), [k for _, k in flat], seen)
        self.num_classes = len(class_names)

    @torch.no_grad()
    def predict(self, image: np.ndarray) -> list[Detection]:
        """uint8 RGB ``(H, W, 3)`` -> detections, highest score first (at most ``spec.detections_per_img``)."""
        if not self.num_classes:
            raise OvbenchError("call set_vocabulary before predict")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise OvbenchError(f"predict takes a uint8 RGB (H, W, 3) image, got {image.dtype} {image.shape}")
        x = torch.tensor(image, device=self.device).permute(2, 0, 1).float().div(255.0)
        out = self.net([x])[0]
        order = out["scores"].argsort(descending=True).cpu()
        boxes, scores = out["boxes"].cpu()[order].tolist(), out["scores"].cpu()[order].tolist()
        labels = (out["labels"].cpu()[order] - 1).tolist()
        masks = (out["masks"][:, 0] >= 0.5).cpu()[order].numpy() if "masks" in out else [None] * len(order)
        return [Detection(tuple(b), s, lab, m) for b, s, lab, m in zip(boxes, scores, labels, masks)]


def save_detector_file(path: Path | str, net: OVMaskRCNN, spec: DetectorSpec, training_names: Sequence[str],
                       summary: Mapping[str, Any]) -> Path:
    """Write a detector model file atomically (see the module docstring); returns its path."""
    state = {"format": MODEL_FORMAT, "spec": spec.to_dict(), "training_names": list(training_names),
             "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()}, "summary": dict(summary)}
    path = Path(path)
    atomic_write(path, lambda f: torch.save(state, f))
    return path


def read_detector_file(path: Path | str) -> dict[str, Any]:
    """The contents of a detector model file, checked; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise OvbenchError(f"{path}: model file not found; train a detector with `ovbench train CONFIG` "
                           f"(it writes OUTPUT/model.pt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise OvbenchError(f"{path}: not a readable model file ({type(e).__name__}); re-run `ovbench train`") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        raise OvbenchError(f"{path}: not an ovbench detector model file (format {MODEL_FORMAT}, found "
                           f"{found!r}); a training checkpoint_*.pt is not one either: use OUTPUT/model.pt")
    return state


def load_detector_file(path: Path | str, clip_override: Mapping[str, Any] | None = None,
                       base_dir: Path | str = ".", device: str = "cpu", name: str | None = None) -> OVDetector:
    """An :class:`OVDetector` from a model file; ``clip_override`` replaces the spec's CLIP config;
    ``name`` defaults to the run's name stored in the file."""
    state = read_detector_file(path)
    spec = DetectorSpec.from_dict(state["spec"])
    clip = clip_from_config(clip_override if clip_override is not None else spec.clip, base_dir, device=device)
    net = build_detector(dataclasses.replace(spec, backbone_weights=None), clip, (), base_dir)
    net.load_state_dict(state["state_dict"])
    name = name or str(state.get("summary", {}).get("name", "detector"))
    return OVDetector(net.to(device), clip, spec, state["training_names"], name=name)


def load_detector(path: Path | str, device: str = "cpu") -> OVDetector:
    """A detector from a model file (``.pt``) or a model config ``{kind: detector, checkpoint, clip?, name?}``;
    relative paths inside either are relative to the file's folder."""
    path = Path(path)
    if path.suffix == ".pt":
        return load_detector_file(path, base_dir=path.parent, device=device)
    if not path.is_file():
        raise OvbenchError(f"{path}: model not found; pass a detector model.pt from `ovbench train` or a model config")
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise OvbenchError(f"{path}: not a YAML/JSON model config ({str(e).splitlines()[0]})") from None
    unknown = sorted(set(config) - {"kind", "checkpoint", "clip", "name"}) if isinstance(config, dict) else []
    if not isinstance(config, dict) or config.get("kind") != "detector" or "checkpoint" not in config or unknown:
        raise OvbenchError(f"{path}: a detector model config is {{kind: detector, checkpoint: PATH, clip: {{...}} "
                           f"(optional), name: str (optional)}}; unknown keys: {unknown}")
    checkpoint = Path(config["checkpoint"]).expanduser()
    checkpoint = checkpoint if checkpoint.is_absolute() else path.parent / checkpoint
    return load_detector_file(checkpoint, config.get("clip"), path.parent, device, config.get("name"))
