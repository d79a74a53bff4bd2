"""The two-stage "frozen CLIP per mask" baseline (ZSSeg / SimBaseline: Xu et al. 2022, "A Simple
Baseline for Open-Vocabulary Semantic Segmentation with Pre-trained Vision-language Model").

Stage 1, a mask proposer (ovbench's trained segmenter), gives Q mask probabilities and their class
probabilities. Stage 2 crops every non-empty binary mask out of the image, classifies each crop with
a frozen CLIP image encoder against the class names' text embeddings, and fuses both class
probabilities with ZSSeg's geometric ensemble before the usual Σ_q p[q, k] · mask[q] semantic
inference. It costs one CLIP image-encoder forward per non-empty mask, which :meth:`counters` reports.

The proposer is duck-typed: any :class:`~ovbench.models.api.StagedSegmenter` that also has
``training_names`` (a set of str) and ``mask_probabilities(outputs, image_size) -> (class_probs (B, Q, K),
mask_prob (B, Q, H, W))`` for its ``forward`` outputs, as :class:`~ovbench.models.segmenter.OVSegmenter`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from baselines.two_stage.crops import crop_batches, image_tensor
from baselines.two_stage.ensemble import (class_clip_weights, clip_class_probs, geometric_ensemble,
                                          seen_classes, semantic_map)
from ovbench.errors import OvbenchError
from torch import nn

from ovbench.models.api import Batch, StagedSegmenter, check_image
from ovbench.models.clip import Clip, text_tower
from ovbench.models.prompts import templates as template_set
from ovbench.models.zoo import build_model, clip_from_config, register_model

#: What the two-stage model uses of its proposer.
PROPOSER_MEMBERS = ("training_names", "set_vocabulary", "preprocess", "forward", "mask_probabilities", "towers",
                    "to", "clear_text_cache")
#: The keys a ``two-stage`` model config may have (``kind``, ``proposer`` and ``clip`` are required).
CONFIG_KEYS = frozenset({"kind", "name", "proposer", "clip", "templates", "mask_threshold", "expand_ratio",
                         "clip_weight_seen", "clip_weight_unseen", "batch_size", "logit_scale", "max_proposals",
                         "device"})


class TwoStageSegmenter(StagedSegmenter):
    """ZSSeg-style inference around a mask ``proposer`` and a frozen ``clip``.

    ``templates``: a prompt template set name (:mod:`ovbench.models.prompts`) or the templates
    themselves; ``mask_threshold``: binary mask = mask probability > threshold; ``expand_ratio`` (≥ 1):
    crop box enlargement; ``clip_weight_seen`` / ``clip_weight_unseen`` (in [0, 1]): CLIP's exponent
    λ in the ensemble for classes the proposer was / was not trained on (ZSSeg: 0.2 / 0.8);
    ``batch_size``: crops per CLIP forward call; ``logit_scale``: CLIP's softmax temperature⁻¹;
    ``max_proposals``: keep only the n proposals of highest class confidence (max_k p_seg) per image
    (None: all, as ZSSeg; ``ovbench profile`` sweeps it to time latency against the number of masks).
    """

    name = "two-stage"

    def __init__(self, proposer: Any, clip: Clip, templates: str | Sequence[str] = "scene",
                 mask_threshold: float = 0.5, expand_ratio: float = 1.0, clip_weight_seen: float = 0.2,
                 clip_weight_unseen: float = 0.8, batch_size: int = 32, logit_scale: float = 100.0,
                 max_proposals: int | None = None, name: str = "two-stage") -> None:
        for key, value in (("clip_weight_seen", clip_weight_seen), ("clip_weight_unseen", clip_weight_unseen),
                           ("mask_threshold", mask_threshold)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise OvbenchError(f"two-stage: {key} must be a number in [0, 1], got {value!r}")
        if not isinstance(expand_ratio, (int, float)) or isinstance(expand_ratio, bool) or expand_ratio < 1.0:
            raise OvbenchError(f"two-stage: expand_ratio must be a number >= 1, got {expand_ratio!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise OvbenchError(f"two-stage: batch_size must be a positive integer, got {batch_size!r}")
        if max_proposals is not None and (not isinstance(max_proposals, int) or isinstance(max_proposals, bool)
                                          or max_proposals < 1):
            raise OvbenchError(f"two-stage: max_proposals must be a positive integer or null, got {max_proposals!r}")
        if not isinstance(logit_scale, (int, float)) or isinstance(logit_scale, bool) or logit_scale <= 0:
            raise OvbenchError(f"two-stage: logit_scale must be a positive number, got {logit_scale!r}")
        for member in PROPOSER_MEMBERS:
            if not hasattr(proposer, member):
                raise OvbenchError(f"two-stage: the proposer ({type(proposer).__name__}) has no {member!r}; "
                                   f"it must be a mask proposer such as the trained segmenter")
        self.proposer = proposer
        self.clip = clip
        self.name = name
        self.max_proposals = max_proposals
        self.templates = template_set(templates) if isinstance(templates, str) else tuple(templates)
        self.mask_threshold = float(mask_threshold)
        self.expand_ratio = float(expand_ratio)
        self.clip_weight_seen = float(clip_weight_seen)
        self.clip_weight_unseen = float(clip_weight_unseen)
        self.batch_size = batch_size
        self.logit_scale = float(logit_scale)
        image_size = clip.model.visual.image_size
        self.crop_size = int(image_size[0] if isinstance(image_size, (tuple, list)) else image_size)
        self.clip_forwards = 0      # crops through the CLIP image encoder so far
        self.images = 0             # images predicted so far
        self._class_names: list[list[str]] | None = None

    # -- vocabulary ---------------------------------------------------------------------------
    def set_vocabulary(self, class_names: Sequence[Sequence[str]]) -> None:
        """Set the K classes (each one or more names) for the proposer and for CLIP; classes with a
        name in the proposer's ``training_names`` are *seen* (CLIP weight ``clip_weight_seen``)."""
        names = [[str(n) for n in ([c] if isinstance(c, str) else c)] for c in class_names]
        if not names or any(not c for c in names):
            raise OvbenchError("two-stage: the vocabulary needs at least one class, each with at least one name")
        self.proposer.set_vocabulary(names)
        flat = [n for c in names for n in c]
        self.name_to_class = [k for k, c in enumerate(names) for _ in c]
        self.name_emb = self.clip.name_embeddings(flat, self.templates).to(self.clip.device)  # (M, D)
        self.seen = seen_classes(names, frozenset(self.proposer.training_names))          # (K,) bool
        self.clip_weight = class_clip_weights(self.seen, self.clip_weight_seen, self.clip_weight_unseen)
        self._class_names = names

    @property
    def num_classes(self) -> int:
        if self._class_names is None:
            raise OvbenchError("two-stage: call set_vocabulary() before predict()")
        return len(self._class_names)

    # -- stage 2 ------------------------------------------------------------------------------
    @torch.no_grad()
    def clip_probabilities(self, image: np.ndarray | torch.Tensor,
                           mask_prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIP's class probabilities of each proposal, float32 ``(Q, K)``, and the validity flags ``(Q,)``.

        ``image`` uint8 ``(H, W, 3)`` (array or tensor), ``mask_prob`` ``(Q, H, W)`` in [0, 1]. Binary masks are
        ``mask_prob > mask_threshold``; an empty one is invalid, gets no crop (no CLIP forward) and
        ``p_clip = 1`` for every class, as in ZSSeg.
        """
        k = self.num_classes
        binary = mask_prob > self.mask_threshold
        p_clip = torch.ones((binary.shape[0], k), dtype=torch.float32, device=mask_prob.device)
        valid = torch.zeros(binary.shape[0], dtype=torch.bool, device=mask_prob.device)
        pixels = image_tensor(image, mask_prob.device)
        for crops, queries in crop_batches(pixels, binary, self.crop_size, self.expand_ratio, self.batch_size):
            region_emb = self.clip.encode_image(crops.to(self.clip.device))
            self.clip_forwards += int(crops.shape[0])
            probs = clip_class_probs(region_emb, self.name_emb, self.name_to_class, k, self.logit_scale)
            p_clip[queries] = probs.to(p_clip.device)
            valid[queries] = True
        return p_clip, valid

    # -- stages -------------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> Batch:
        """``{"pixels": uint8 (1, H, W, 3) on CLIP's device, "proposer": the proposer's input}``."""
        check_image(image, "two-stage")
        return {"pixels": torch.from_numpy(np.array(image, copy=True))[None].to(self.clip.device),
                "proposer": self.proposer.preprocess(image)}

    @torch.no_grad()
    def forward(self, inputs: Batch) -> Batch:
        """``{"scores": (B, K, H, W)}`` float32: Σ_q p[q, k] · mask_prob[q] with p the geometric
        ensemble of the proposer's and CLIP's class probabilities, at the image's size."""
        pixels = inputs["pixels"]
        size = tuple(pixels.shape[1:3])
        p_seg, mask_prob = self.proposer.mask_probabilities(self.proposer.forward(inputs["proposer"]), size)
        if p_seg.shape[-1] != self.num_classes or p_seg.shape[:2] != mask_prob.shape[:2]:
            raise OvbenchError(f"two-stage: the proposer returned class probabilities {tuple(p_seg.shape)} and "
                               f"masks {tuple(mask_prob.shape)} for {self.num_classes} classes")
        scores = []
        for image, seg, masks in zip(pixels, p_seg, mask_prob):
            if self.max_proposals is not None and self.max_proposals < seg.shape[0]:
                keep = seg.max(dim=-1).values.topk(self.max_proposals).indices
                seg, masks = seg[keep], masks[keep]
            p_clip, _ = self.clip_probabilities(image, masks)
            scores.append(semantic_map(geometric_ensemble(seg, p_clip, self.clip_weight.to(seg.device)), masks))
        self.images += int(pixels.shape[0])
        return {"scores": torch.stack(scores)}

    def postprocess(self, outputs: Batch, image_size: tuple[int, int]) -> list[np.ndarray]:
        """Arg-max of the scores (already at the image's size)."""
        return list(outputs["scores"].argmax(dim=1).cpu().numpy().astype(np.int64))

    def scores(self, image: np.ndarray) -> torch.Tensor:
        """Per-pixel class scores float32 ``(K, H, W)`` of one image (see :meth:`forward`)."""
        check_image(image, "two-stage")
        return self.forward(self.preprocess(image))["scores"][0]

    def towers(self) -> dict[str, list[nn.Module]]:
        """The proposer's towers plus CLIP's image encoder (per crop) and text tower."""
        own = self.proposer.towers()
        return {"image": [*own["image"], self.clip.model.visual], "text": [*own["text"], text_tower(self.clip)]}

    def to(self, device: torch.device | str) -> "TwoStageSegmenter":
        self.proposer.to(device)
        self.clip.to(device)
        if self._class_names is not None:
            self.name_emb = self.name_emb.to(device)
        return self

    def clear_text_cache(self) -> None:
        self.proposer.clear_text_cache()
        self.clip.clear_text_cache()

    def counters(self) -> dict[str, int]:
        """``clip_image_forwards``: crops encoded by the CLIP image encoder so far; ``images``: images
        predicted so far (forwards per image = their ratio); the proposer's own counters, if any, as
        ``proposer_<name>``."""
        out = {"clip_image_forwards": self.clip_forwards, "images": self.images}
        own = getattr(self.proposer, "counters", None)
        out.update({f"proposer_{key}": int(value) for key, value in (own() if callable(own) else {}).items()})
        return out


@register_model("two-stage")
def build_two_stage(config: Mapping[str, Any], base_dir: Path) -> TwoStageSegmenter:
    """``{"kind": "two-stage", "proposer": {model config}, "clip": {clip config}, "templates": "scene",
    "mask_threshold": 0.5, "expand_ratio": 1.0, "clip_weight_seen": 0.2, "clip_weight_unseen": 0.8,
    "batch_size": 32, "logit_scale": 100.0, "max_proposals": null, "name": "two-stage", "device": "cpu"}``;
    ``device`` is where CLIP runs, paths are relative to ``base_dir``."""
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise OvbenchError(f"two-stage config: unknown key(s) {', '.join(unknown)}; "
                           f"known: {', '.join(sorted(CONFIG_KEYS))}")
    missing = [key for key in ("proposer", "clip") if not isinstance(config.get(key), Mapping)]
    if missing:
        raise OvbenchError(f"two-stage config: {' and '.join(missing)} must be given, each as a mapping")
    options = {key: config[key] for key in ("templates", "mask_threshold", "expand_ratio", "clip_weight_seen",
                                             "clip_weight_unseen", "batch_size", "logit_scale", "max_proposals",
                                             "name") if key in config}
    clip = clip_from_config(config["clip"], base_dir, device=config.get("device", "cpu"))
    proposer = build_model(config["proposer"], base_dir)
    return TwoStageSegmenter(proposer, clip, **options)
