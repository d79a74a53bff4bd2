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


DENSE_LIMIT = 1 << 17  # K*K bins up to which counting uses bincount instead of sorting


def image_confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_label: int) -> SparseConfusion:
    """Confusion of one prediction against its ground truth.

    ``pred`` and ``gt`` are integer label maps of the same shape ``(H, W)``; ``pred`` values lie
    in ``0..K-1``; ``gt`` pixels equal to ``ignore_label`` (which must be >= K, as every
    protocol's is) are dropped.

    Counting runs over runs of equal (gt, pred) pairs in raster order rather than over pixels:
    exact for any map, and several times cheaper than a per-pixel count for the
    piecewise-constant maps segmentation produces.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
    k = num_classes
    if ignore_label < k:
        raise ValueError(f"ignore label {ignore_label} collides with class ids 0..{k - 1}")
    g_flat, p_flat = gt.ravel(), pred.ravel()
    if g_flat.size == 0:
        return SparseConfusion(k, np.zeros(0, np.int64), np.zeros(0, np.int64))
    change = g_flat[1:] != g_flat[:-1]
    change |= p_flat[1:] != p_flat[:-1]
    if np.count_nonzero(change) > g_flat.size // 4:  # noise-like maps: runs do not pay, count pixels
        items, weights = g_flat.astype(np.int64) * k + p_flat, None
    else:
        starts = np.concatenate(([0], np.flatnonzero(change) + 1))
        weights = np.diff(np.append(starts, g_flat.size))
        items = g_flat[starts].astype(np.int64) * k + p_flat[starts]
    # gt in 0..K-1 gives items below K*K; the ignore label (>= K) gives items >= K*K: one spill bin
    spill = k * k
    items = np.minimum(items, spill)
    if spill <= DENSE_LIMIT:
        dense = np.bincount(items, weights=weights, minlength=spill + 1)[:spill]
        cells = np.flatnonzero(dense)
        counts = dense[cells]
    else:
        cells, inverse = np.unique(items, return_inverse=True)
        counts = np.bincount(inverse, weights=weights, minlength=cells.size)
        if cells.size and cells[-1] == spill:
            cells, counts = cells[:-1], counts[:-1]
    return SparseConfusion(num_classes=k, cells=cells, counts=counts.astype(np.int64))


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
