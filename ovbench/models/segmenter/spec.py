"""The declarative description of an open-vocabulary segmenter and how to build it.

A :class:`SegmenterSpec` is the ``model`` section of a training config (kind ``segmenter``); it is
stored inside every model file so that the network can be rebuilt for prediction.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
import torchvision
from torch import nn

from ovbench.errors import OvbenchError
from ovbench.models.clip import CLIP_MEAN, CLIP_STD, Clip
from ovbench.models.segmenter.backbones import ClipTrunk, TorchvisionResNetTrunk
from ovbench.models.segmenter.losses import SetCriterion
from ovbench.models.segmenter.model import Segmenter

#: Input normalisations, RGB in [0, 1]: CLIP's, and ImageNet's (GKC's student, spec §2.1).
NORMALIZATIONS = {"clip": (CLIP_MEAN, CLIP_STD),
                  "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
#: Trunks: the CLIP visual tower (fine-tuned) or a torchvision ResNet (random or a local state dict).
TRUNKS = ("clip", "resnet50", "resnet101")


@dataclass(frozen=True)
class SegmenterSpec:
    """Architecture, text side and loss weights of a segmenter (defaults: GKC's, spec §2 and §5).

    ``clip``: the CLIP whose text tower embeds class names under ``template`` (and whose visual tower
    is the trunk when ``trunk == "clip"``), as :func:`ovbench.models.zoo.clip_from_config` reads it.
    ``trunk_weights``: a torchvision ResNet state-dict file for the ``resnet*`` trunks (None: random).
    ``size_divisibility``: inputs are padded to a multiple of it (pixels). ``test_short_side``: images
    are resized so that their short side has this many pixels before inference (None: native size),
    unless the long side would then exceed ``test_max_size`` (detectron2's ResizeShortestEdge(800, 1333)).
    """

    clip: Mapping[str, Any]
    trunk: str = "clip"
    trunk_weights: str | None = None
    normalization: str = "imagenet"
    template: str = "{}"
    num_queries: int = 100
    hidden_dim: int = 256
    conv_dim: int = 256
    mask_dim: int = 256
    nheads: int = 8
    dim_feedforward: int = 2048
    dec_layers: int = 9
    void_weight: float = 0.05
    weight_ce: float = 2.0
    weight_mask: float = 5.0
    weight_dice: float = 5.0
    num_points: int = 12544
    size_divisibility: int = 32
    test_short_side: int | None = None
    test_max_size: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.trunk not in TRUNKS:
            problems.append(f"trunk must be one of {TRUNKS}, got {self.trunk!r}")
        if self.normalization not in NORMALIZATIONS:
            problems.append(f"normalization must be one of {sorted(NORMALIZATIONS)}, got {self.normalization!r}")
        if "{}" not in self.template:
            problems.append(f"template {self.template!r} has no '{{}}' for the class name")
        for name in ("num_queries", "hidden_dim", "conv_dim", "mask_dim", "nheads", "dim_feedforward",
                     "num_points", "size_divisibility"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if problems:
            raise OvbenchError("invalid segmenter spec: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SegmenterSpec":
        """From the ``model`` section of a config (``kind`` is dropped); unknown keys are an error."""
        data = {k: v for k, v in data.items() if k != "kind"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OvbenchError(f"unknown segmenter key(s) {unknown}; known: {sorted(known)}")
        if "clip" not in data:
            raise OvbenchError("segmenter spec lacks 'clip' (e.g. {name: RN50, pretrained: /path/RN50.pt})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of JSON types, with ``kind: segmenter``."""
        out = {"kind": "segmenter"}
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        out["clip"] = dict(self.clip)
        return out


def _freeze_unused_clip_parts(visual: nn.Module) -> None:
    """The attention pool (ResNets) and the final norm/projection (ViTs) feed no trunk map; freezing
    them keeps them out of the optimizer and out of DDP's gradient reduction."""
    for attr in ("attnpool", "attn_pool", "ln_post"):
        module = getattr(visual, attr, None)
        if isinstance(module, nn.Module):
            module.requires_grad_(False)
    if isinstance(getattr(visual, "proj", None), nn.Parameter):
        visual.proj.requires_grad_(False)


def build_trunk(spec: SegmenterSpec, clip: Clip, base_dir: Path) -> nn.Module:
    """The trunk module of ``spec`` (see :data:`TRUNKS`)."""
    if spec.trunk == "clip":
        _freeze_unused_clip_parts(clip.model.visual)
        return ClipTrunk(clip)
    resnet = getattr(torchvision.models, spec.trunk)(weights=None)
    if spec.trunk_weights is not None:
        path = Path(spec.trunk_weights).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise OvbenchError(f"{path}: trunk weights not found; give a local torchvision {spec.trunk} state dict")
        resnet.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return TorchvisionResNetTrunk(resnet)


def build_segmenter(spec: SegmenterSpec, clip: Clip, base_dir: Path | str = ".") -> Segmenter:
    """The network of ``spec``; ``clip`` gives the text width (and the trunk when ``trunk == "clip"``)."""
    criterion = SetCriterion(void_weight=spec.void_weight, weight_ce=spec.weight_ce, weight_mask=spec.weight_mask,
                             weight_dice=spec.weight_dice, num_points=spec.num_points)
    return Segmenter(build_trunk(spec, clip, Path(base_dir)), clip.embed_dim, num_queries=spec.num_queries,
                     hidden_dim=spec.hidden_dim, conv_dim=spec.conv_dim, mask_dim=spec.mask_dim, nheads=spec.nheads,
                     dim_feedforward=spec.dim_feedforward, dec_layers=spec.dec_layers, criterion=criterion)


def normalize_images(images: torch.Tensor, normalization: str) -> torch.Tensor:
    """uint8 (or 0-255 float) ``(B, 3, H, W)`` -> normalised float32 ``(B, 3, H, W)``."""
    mean, std = NORMALIZATIONS[normalization]
    x = images.float().div(255.0)
    return (x - x.new_tensor(mean).view(1, 3, 1, 1)) / x.new_tensor(std).view(1, 3, 1, 1)
