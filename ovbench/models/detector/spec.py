"""The declarative description of the shared open-vocabulary detector (ViLD, EZSD).

A :class:`DetectorSpec` is the ``model`` section of a detector run config (``kind: detector``); it is
stored inside every detector model file so that the network can be rebuilt for prediction. Defaults
follow EZSD's detector (spec ``ezsd.md`` §5): Mask R-CNN R50-FPN, box head "301212", a frozen-text
classifier with a learned, unnormalised background vector and a learnable temperature (init 100),
semantic class-agnostic box regression, a class-agnostic mask head, distillation weight 1,
post-processing with score threshold 0, NMS 0.5 and 300 detections per image.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from ovbench.errors import OvbenchError

BACKBONES = ("resnet18", "resnet34", "resnet50")
#: ``frozen_bn``: torchvision's FrozenBatchNorm2d (statistics and affine fixed, the detection default
#: with ImageNet weights); ``bn``: trainable BatchNorm2d (training from scratch, as ViLD does).
BACKBONE_NORMS = ("frozen_bn", "bn")
#: Normalisation inside the box head's convolutions: none (EZSD) or BatchNorm (ViLD).
HEAD_NORMS = ("none", "bn")
#: R-CNN box-regression losses on the class-agnostic deltas: torchvision's smooth L1 (beta 1/9) or
#: mmdet's L1 (EZSD); both summed over positives and divided by the number of sampled RoIs.
BOX_LOSSES = ("smooth_l1", "l1")


@dataclass(frozen=True)
class DetectorSpec:
    """Architecture, text side, loss weights and post-processing of the detector.

    ``clip``: the CLIP whose text tower embeds class names under ``template``, as
    :func:`ovbench.models.zoo.clip_from_config` reads it. ``backbone_weights``: a local torchvision
    ResNet state-dict file (None: random weights; nothing is ever downloaded).
    ``trainable_backbone_layers``: 0-5 ResNet stages trained, counted from ``layer4`` (torchvision's).
    ``fpn_channels``: width of the FPN levels P2-P6, hence of the RPN head and the RoI features (256 in
    Mask R-CNN; smaller only for the synthetic world's CPU-sized detectors).
    ``min_size`` / ``max_size``: the transform resizes each image so that its short side is ``min_size``
    pixels unless its long side would exceed ``max_size``; a list of ``min_size`` values is a
    multi-scale training choice (testing uses the last). ``anchor_sizes``: one RPN anchor side in
    pixels per FPN level (P2-P6), three aspect ratios each. RPN ``rpn_*`` counts are boxes per image.
    ``box_head``: ``convfc-ABCDEF`` = A shared 3x3 convs, B shared FCs, then C convs + D FCs in the
    classification branch and E convs + F FCs in the regression branch (``convfc-301212``: EZSD;
    ``convfc-420000``: ViLD's 4 convs + 2 FCs shared); convs have ``conv_dim`` channels, FCs ``fc_dim``.
    ``temperature_init``: T multiplying every logit (learnt as log T when ``learn_temperature``).
    ``normalize_background``: L2-normalise the background vector (ViLD) or not (EZSD).
    ``distill_weight``: λ of the distillation loss, applied when targets carry ``distill_boxes``.
    ``ensemble``: ViLD-ensemble (spec §10): a second, image box head (the ``box_head`` layout without its
    regression branch, plus its own projection) learns only from distillation while the text branch learns
    only from classification; test scores are their geometric ensemble (needs distillation regions).
    ``box_score_thresh`` / ``box_nms_thresh`` / ``detections_per_img``: test post-processing (softmax
    score floor, per-class NMS IoU, per-image cap).
    """

    clip: Mapping[str, Any]
    backbone: str = "resnet50"
    backbone_weights: str | None = None
    backbone_norm: str = "frozen_bn"
    trainable_backbone_layers: int = 3
    fpn_channels: int = 256
    min_size: int | tuple[int, ...] = 800
    max_size: int = 1333
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 1000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    box_score_thresh: float = 0.0
    box_nms_thresh: float = 0.5
    detections_per_img: int = 300
    box_head: str = "convfc-301212"
    conv_dim: int = 256
    fc_dim: int = 1024
    head_norm: str = "none"
    box_loss: str = "l1"
    template: str = "a photo of a {}"
    temperature_init: float = 100.0
    learn_temperature: bool = True
    normalize_background: bool = False
    semantic_regression: bool = True
    mask: bool = True
    distill_weight: float = 1.0
    ensemble: bool = False

    def __post_init__(self) -> None:
        sizes = self.min_size if isinstance(self.min_size, (list, tuple)) else (self.min_size,)
        object.__setattr__(self, "min_size", int(sizes[0]) if len(sizes) == 1 else tuple(int(s) for s in sizes))
        object.__setattr__(self, "anchor_sizes", tuple(int(s) for s in self.anchor_sizes))
        problems = []
        if self.backbone not in BACKBONES:
            problems.append(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.backbone_norm not in BACKBONE_NORMS:
            problems.append(f"backbone_norm must be one of {BACKBONE_NORMS}, got {self.backbone_norm!r}")
        if self.head_norm not in HEAD_NORMS:
            problems.append(f"head_norm must be one of {HEAD_NORMS}, got {self.head_norm!r}")
        if self.box_loss not in BOX_LOSSES:
            problems.append(f"box_loss must be one of {BOX_LOSSES}, got {self.box_loss!r}")
        if not 0 <= self.trainable_backbone_layers <= 5:
            problems.append(f"trainable_backbone_layers must be in 0..5, got {self.trainable_backbone_layers}")
        if not sizes or min(sizes) < 1 or self.max_size < max(sizes):
            problems.append(f"min_size must be >= 1 and <= max_size, got min_size {self.min_size}, "
                            f"max_size {self.max_size}")
        if len(self.anchor_sizes) != 5 or min(self.anchor_sizes, default=0) < 1:
            problems.append(f"anchor_sizes must be 5 positive sizes (P2-P6), got {list(self.anchor_sizes)}")
        for name in ("rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train", "rpn_pre_nms_top_n_test",
                     "rpn_post_nms_top_n_test", "box_batch_size_per_image", "detections_per_img", "conv_dim",
                     "fc_dim", "fpn_channels"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("rpn_nms_thresh", "box_positive_fraction", "box_nms_thresh"):
            if not 0 < getattr(self, name) <= 1:
                problems.append(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if not 0 <= self.box_score_thresh < 1:
            problems.append(f"box_score_thresh must be in [0, 1), got {self.box_score_thresh}")
        try:
            box_head_layout(self.box_head)
        except OvbenchError as e:
            problems.append(str(e))
        if "{}" not in self.template:
            problems.append(f"template {self.template!r} has no '{{}}' for the class name")
        if self.temperature_init <= 0:
            problems.append(f"temperature_init must be > 0, got {self.temperature_init}")
        if self.distill_weight < 0:
            problems.append(f"distill_weight must be >= 0, got {self.distill_weight}")
        if problems:
            raise OvbenchError("invalid detector spec: " + "; ".join(problems))

    @property
    def test_min_size(self) -> int:
        """The short side (pixels) images are resized to at test time."""
        return self.min_size[-1] if isinstance(self.min_size, tuple) else self.min_size

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DetectorSpec":
        """From the ``model`` section of a config (``kind: detector`` is dropped); unknown keys are an error."""
        if data.get("kind", "detector") != "detector":
            raise OvbenchError(f"a detector spec has kind 'detector', got {data.get('kind')!r}")
        data = {k: v for k, v in data.items() if k != "kind"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OvbenchError(f"unknown detector key(s) {unknown}; known: {sorted(known)}")
        if not isinstance(data.get("clip"), Mapping):
            raise OvbenchError("detector spec lacks 'clip' (e.g. {name: ViT-B-32, pretrained: /path/ViT-B-32.pt})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of JSON types, with ``kind: detector``."""
        out: dict[str, Any] = {"kind": "detector"}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        out["clip"] = dict(self.clip)
        return out


def box_head_layout(name: str) -> tuple[int, int, int, int, int, int]:
    """``convfc-ABCDEF`` -> (shared convs, shared FCs, cls convs, cls FCs, reg convs, reg FCs)."""
    prefix, _, digits = name.partition("-")
    if prefix != "convfc" or len(digits) != 6 or not digits.isdigit():
        raise OvbenchError(f"box_head {name!r}: write convfc-ABCDEF (6 digits: shared convs, shared FCs, "
                           f"cls convs, cls FCs, reg convs, reg FCs), e.g. convfc-301212")
    layout = tuple(int(d) for d in digits)
    if layout[1] and (layout[2] or layout[4]):
        raise OvbenchError(f"box_head {name!r}: branch convs cannot follow shared FCs")
    return layout  # type: ignore[return-value]
