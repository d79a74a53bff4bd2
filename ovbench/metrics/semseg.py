"""Semantic-segmentation metrics from per-class pixel statistics, on a 0-100 scale.

Input everywhere: ``stats`` of shape ``(3, K)`` = intersection (true positives), ground-truth
area and predicted area per class, in pixels, ignore pixels already dropped.

Conventions (stated in every protocol):

- ``mIoU`` — detectron2's: the mean IoU over classes with ground-truth pixels; a class that is
  predicted but absent from the ground truth costs nothing.
- ``mIoU_mmseg`` — mmsegmentation's: the mean over classes with a non-empty union, so a false
  positive of an absent class counts as IoU 0.
- ``mIoU_base`` / ``mIoU_novel`` — the detectron2 mean restricted to one partition; ``hIoU`` their
  harmonic mean.
- ``mIoU_unseen`` — the same mean over the classes a leakage audit found truly unseen (no shared
  name, synonym or WordNet synset; :mod:`ovbench.protocols.audit`), with ``num_unseen_classes``;
  only when ``unseen_ids`` is given.
- ``IoU`` — per class id (string keys, never display names); ``None`` for classes without
  ground-truth pixels, matching ``mIoU``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean() * 100) if values.size else None


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    """Harmonic mean of two percentages; ``None`` if either is undefined, 0 if both are 0."""
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def semseg_metrics(stats: np.ndarray, base_ids: Sequence[int], novel_ids: Sequence[int],
                   unseen_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """Every semseg metric of ``stats`` (shape ``(3, K)``); undefined values are ``None``.

    ``unseen_ids`` (the audit's truly unseen classes) adds ``mIoU_unseen`` and ``num_unseen_classes``.
    """
    inter, gt, pred = (np.asarray(s, dtype=np.float64) for s in stats)
    union = gt + pred - inter
    has_gt = gt > 0
    has_union = union > 0
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=has_union)
    acc = np.divide(inter, gt, out=np.zeros_like(inter), where=has_gt)

    def partition_miou(ids: Sequence[int]) -> float | None:
        ids = np.asarray(ids, dtype=np.int64)
        return _mean_or_none(iou[ids][has_gt[ids]]) if ids.size else None

    total_gt = gt.sum()
    m_base, m_novel = partition_miou(base_ids), partition_miou(novel_ids)
    metrics = {
        "mIoU": _mean_or_none(iou[has_gt]),
        "mIoU_mmseg": _mean_or_none(iou[has_union]),
        "mIoU_base": m_base,
        "mIoU_novel": m_novel,
        "hIoU": harmonic_mean(m_base, m_novel),
        "fwIoU": float((gt[has_gt] / total_gt * iou[has_gt]).sum() * 100) if total_gt else None,
        "pAcc": float(inter.sum() / total_gt * 100) if total_gt else None,
        "mAcc": _mean_or_none(acc[has_gt]),
        "IoU": {str(c): (float(iou[c] * 100) if has_gt[c] else None) for c in range(len(iou))},
        "num_classes_with_gt": int(has_gt.sum()),
    }
    if unseen_ids is not None:
        metrics["mIoU_unseen"] = partition_miou(unseen_ids)
        metrics["num_unseen_classes"] = len(unseen_ids)
    return metrics


def miou_batch(stats: np.ndarray, class_ids: Sequence[int] | None = None) -> np.ndarray:
    """detectron2 mIoU (0-100) of many statistic sets at once.

    ``stats`` has shape ``(B, 3, K)``; returns shape ``(B,)``, NaN where no class (of
    ``class_ids``, default all) has ground-truth pixels.
    """
    s = np.asarray(stats, dtype=np.float64)
    if class_ids is not None:
        s = s[:, :, np.asarray(class_ids, dtype=np.int64)]
    inter, gt, pred = s[:, 0], s[:, 1], s[:, 2]
    union = gt + pred - inter
    has_gt = gt > 0
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=has_gt)
    n = has_gt.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (iou * has_gt).sum(axis=1) / n * 100, np.nan)
