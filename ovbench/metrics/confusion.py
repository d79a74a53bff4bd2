"""Confusion statistics of label maps, per image and streamed over a dataset.

Conventions: ``K`` classes with ids ``0..K-1``; ground-truth pixels equal to the ignore label
are dropped everywhere; rows of a confusion matrix are ground truth, columns are predictions.
Predictions are validated elsewhere to lie in ``0..K-1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SparseConfusion:
    """The non-zero cells of one image's ``K x K`` confusion matrix.

    ``cells`` holds flat indices ``gt * K + pred`` (int64, shape ``(n,)``, unique) and ``counts``
    the pixel counts of those cells (int64, shape ``(n,)``).
    """

    num_classes: int
    cells: np.ndarray
    counts: np.ndarray

    def per_class(self) -> np.ndarray:
        """``(3, K)`` int64: intersection, ground-truth area and predicted area per class, in pixels."""
        k = self.num_classes
        gt, pred = np.divmod(self.cells, k)
        stats = np.zeros((3, k), dtype=np.int64)
        diag = gt == pred
        np.add.at(stats[0], gt[diag], self.counts[diag])
        np.add.at(stats[1], gt, self.counts)
        np.add.at(stats[2], pred, self.counts)
        return stats


def image_confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_label: int) -> SparseConfusion:
    """Confusion of one prediction against its ground truth.

    ``pred`` and ``gt`` are integer label maps of the same shape ``(H, W)``; ``pred`` values lie
    in ``0..K-1``; ``gt`` pixels equal to ``ignore_label`` are dropped.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    k = num_classes
    valid = gt != ignore_label
    if valid.all():
        g, p = gt.ravel(), pred.ravel()
    else:
        g, p = gt[valid], pred[valid]
    flat = g.astype(np.int64) * k + p
    counts = np.bincount(flat)
    cells = np.flatnonzero(counts)
    return SparseConfusion(num_classes=k, cells=cells, counts=counts[cells])


class StreamingConfusion:
    """A ``K x K`` int64 confusion matrix accumulated image by image (no per-image lists kept)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, conf: SparseConfusion) -> None:
        self.matrix.ravel()[conf.cells] += conf.counts

    def per_class(self) -> np.ndarray:
        """``(3, K)`` int64: intersection, ground-truth area and predicted area per class."""
        m = self.matrix
        return np.stack([np.diag(m), m.sum(axis=1), m.sum(axis=0)])
