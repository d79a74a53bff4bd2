"""Mask2Former set criterion: class CE (void weight), point-sampled BCE + Dice, over every decoder output."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ovbench.models.segmenter.matcher import HungarianMatcher
from ovbench.models.segmenter.points import point_sample, uncertain_point_coords

#: One image's ground truth segment: (class index into the vocabulary, binary mask (H, W) at input
#: resolution), optionally followed by the segment's index into the image's synonym vocabulary.
Segment = tuple[int, torch.Tensor] | tuple[int, torch.Tensor, int]


def dice_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Σ_m [1 − (2 Σ_p σ(x)·t + 1) / (Σ_p σ(x) + Σ_p t + 1)] / ``num_masks``; ``inputs`` logits and
    ``targets`` {0, 1}, both ``(M, P)``."""
    p = inputs.sigmoid()
    numerator = 2 * (p * targets).sum(-1)
    denominator = p.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def sigmoid_ce_loss(inputs: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Σ_m mean_p BCE(σ(x), t) / ``num_masks``; ``inputs`` logits, ``targets`` {0, 1}, both ``(M, P)``."""
    return F.binary_cross_entropy_with_logits(inputs, targets, reduction="none").mean(1).sum() / num_masks


def prepare_targets(targets: Sequence[Sequence[Segment]], device: torch.device | str) -> list[dict]:
    """Per image ``[(class, mask (H, W)[, synonym class]), …]`` -> ``{"labels": (M,) long, "masks":
    (M, H, W) float}`` plus ``"syn_labels": (M,) long`` when the segments carry synonym classes."""
    out = []
    for segments in targets:
        if len(segments) == 0:
            out.append({"labels": torch.zeros(0, dtype=torch.int64, device=device),
                        "syn_labels": torch.zeros(0, dtype=torch.int64, device=device),
                        "masks": torch.zeros(0, 1, 1, device=device)})
            continue
        target = {"labels": torch.tensor([int(s[0]) for s in segments], dtype=torch.int64, device=device),
                  "masks": torch.stack([torch.as_tensor(s[1], device=device).float() for s in segments])}
        if all(len(s) == 3 for s in segments):
            target["syn_labels"] = torch.tensor([int(s[2]) for s in segments], dtype=torch.int64, device=device)
        out.append(target)
    return out


class SetCriterion(nn.Module):
    """Losses of one decoder output, matched separately, summed over the final and all auxiliary outputs.

    ``forward(outputs, targets)``: ``outputs`` has ``pred_logits`` ``(B, N, K + 1)``, ``pred_masks``
    ``(B, N, H, W)`` and ``aux_outputs`` (list of dicts with the same two keys); ``targets`` per image a
    list of ``(class, mask (H_in, W_in))``. Returns the unweighted ``loss_ce``, ``loss_mask``,
    ``loss_dice`` of the final output, ``loss_ce_i`` … for aux output i, and ``loss_total`` =
    Σ over outputs of ``weight_ce``·CE + ``weight_mask``·BCE + ``weight_dice``·Dice (+ the extra terms).

    CE runs over the K names + void with class weight ``void_weight`` on void (unmatched queries'
    target). BCE and Dice run on ``num_points`` points per matched mask picked by importance sampling
    (``oversample_ratio``, ``importance_ratio``, uncertainty −|logit|), normalised by the number of GT masks.

    GKC's additions (spec §3.2, §5.1): ``region_dropout`` ignores each matched query's class target with
    that probability (drawn once per output, shared by both CEs); when outputs carry
    ``pred_syn_logits`` ``(B, N, K_syn + 1)`` and targets synonym classes, ``loss_syn`` is the same
    CE over the per-image synonym vocabulary with the same Hungarian assignment (weight
    ``weight_syn``). Subclasses add terms per output by overriding :meth:`extra_losses` and naming
    their weights in ``self.weights``.
    """

    def __init__(self, matcher: HungarianMatcher | None = None, void_weight: float = 0.1,
                 weight_ce: float = 2.0, weight_mask: float = 5.0, weight_dice: float = 5.0,
                 num_points: int = 12544, oversample_ratio: float = 3.0, importance_ratio: float = 0.75,
                 region_dropout: float = 0.0, weight_syn: float = 2.0) -> None:
        super().__init__()
        self.matcher = matcher if matcher is not None else HungarianMatcher(num_points=num_points)
        self.void_weight = void_weight
        self.region_dropout = region_dropout
        self.weights = {"loss_ce": weight_ce, "loss_mask": weight_mask, "loss_dice": weight_dice,
                        "loss_syn": weight_syn}
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_ratio = importance_ratio

    def loss_labels(self, logits: torch.Tensor, indices: list, targets: list[dict], key: str = "labels",
                    dropped: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Weighted CE of ``logits`` ``(B, N, K + 1)`` against ``targets[b][key]``; unmatched queries target
        void (index K); matched queries flagged in ``dropped`` (per image, aligned with ``indices``) are ignored."""
        num_classes = logits.shape[-1] - 1
        target = torch.full(logits.shape[:2], num_classes, dtype=torch.int64, device=logits.device)
        for b, (q, t) in enumerate(indices):
            labels = targets[b][key][t.to(logits.device)]
            if dropped is not None:
                labels = labels.masked_fill(dropped[b].to(logits.device), -100)
            target[b, q.to(logits.device)] = labels
        weight = torch.ones(num_classes + 1, device=logits.device, dtype=logits.dtype)
        weight[-1] = self.void_weight
        if (target == -100).all():
            return logits.sum() * 0.0
        return F.cross_entropy(logits.transpose(1, 2), target, weight, ignore_index=-100)

    def loss_masks(self, masks: torch.Tensor, indices: list, targets: list[dict], num_masks: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Point-sampled (BCE, Dice) of matched ``masks`` ``(B, N, H, W)`` against their GT masks."""
        src = torch.cat([masks[b, q] for b, (q, _) in enumerate(indices)])[:, None]          # (M, 1, H, W)
        if src.shape[0] == 0:
            zero = masks.sum() * 0.0
            return zero, zero
        tgt = [targets[b]["masks"][t] for b, (_, t) in enumerate(indices)]
        with torch.no_grad():
            coords = uncertain_point_coords(src, self.num_points, self.oversample_ratio, self.importance_ratio)
            tgt_points = torch.cat([point_sample(m[:, None].to(src.dtype), coords[i:i + len(m)])
                                    for i, m in zip(_offsets(tgt), tgt)])[:, 0]
        src_points = point_sample(src, coords)[:, 0]
        return sigmoid_ce_loss(src_points, tgt_points, num_masks), dice_loss(src_points, tgt_points, num_masks)

    def single(self, output: dict, targets: list[dict], num_masks: float, index: int) -> dict[str, torch.Tensor]:
        """Match one decoder output (``index`` in 0 .. number of outputs - 1, the final one last) and
        return its unweighted losses."""
        logits, masks = output["pred_logits"], output["pred_masks"]
        indices = self.matcher(logits.detach(), masks.detach(), targets)
        dropped = ([torch.rand(len(q), device=logits.device) < self.region_dropout for q, _ in indices]
                   if self.region_dropout > 0 else None)
        bce, dice = self.loss_masks(masks, indices, targets, num_masks)
        losses = {"loss_ce": self.loss_labels(logits, indices, targets, "labels", dropped),
                  "loss_mask": bce, "loss_dice": dice}
        if "pred_syn_logits" in output and all("syn_labels" in t for t in targets):
            losses["loss_syn"] = self.loss_labels(output["pred_syn_logits"], indices, targets, "syn_labels", dropped)
        losses.update(self.extra_losses(output, indices, targets, index))
        return losses

    def extra_losses(self, output: dict, indices: list, targets: list[dict], index: int) -> dict[str, torch.Tensor]:
        """Method-specific unweighted losses of one output given its matching (none here)."""
        return {}

    def forward(self, outputs: dict, targets: Sequence[Sequence[Segment]]) -> dict[str, torch.Tensor]:
        device = outputs["pred_logits"].device
        tgts = prepare_targets(targets, device)
        num_masks = max(float(sum(len(t["labels"]) for t in tgts)), 1.0)
        aux = outputs.get("aux_outputs", [])
        losses = self.single(outputs, tgts, num_masks, len(aux))
        for i, out in enumerate(aux):
            for k, v in self.single(out, tgts, num_masks, i).items():
                losses[f"{k}_{i}"] = v
        losses["loss_total"] = sum(self.weights[loss_kind(k)] * v for k, v in losses.items())
        return losses


def loss_kind(name: str) -> str:
    """``loss_ce_3`` -> ``loss_ce`` (the weight key of a per-output loss name)."""
    head, _, tail = name.rpartition("_")
    return head if tail.isdigit() else name


def _offsets(chunks: list[torch.Tensor]) -> list[int]:
    """Start index of each chunk in their concatenation."""
    starts, total = [], 0
    for c in chunks:
        starts.append(total)
        total += len(c)
    return starts
