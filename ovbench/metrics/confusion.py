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


@dataclass(frozen=True)
class LabelRuns:
    """A (prediction, ground truth) pair as runs of equal value pairs in raster order.

    ``gt`` and ``pred`` hold each run's values (shape ``(R,)``) and ``lengths`` its pixel count,
    or ``None`` when every run is one pixel (noise-like maps are kept per pixel, where runs do
    not pay). Every pixel belongs to exactly one run, so counts and value checks over runs are
    exact; for the piecewise-constant maps of segmentation ``R`` is far below the pixel count.
    """

    gt: np.ndarray
    pred: np.ndarray
    lengths: np.ndarray | None

    @classmethod
    def encode(cls, pred: np.ndarray, gt: np.ndarray) -> "LabelRuns":
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
        g, p = gt.ravel(), pred.ravel()
        if g.size < 2:
            return cls(g, p, None)
        change = g[1:] != g[:-1]
        change |= p[1:] != p[:-1]
        if np.count_nonzero(change) > g.size // 4:
            return cls(g, p, None)
        bounds = np.empty(np.count_nonzero(change) + 2, dtype=np.int64)
        bounds[0], bounds[-1] = 0, g.size
        bounds[1:-1] = np.flatnonzero(change)
        bounds[1:-1] += 1
        starts = bounds[:-1]
        return cls(g[starts], p[starts], np.diff(bounds))

    def pixels_where(self, mask: np.ndarray) -> int:
        """How many pixels lie in the runs selected by ``mask`` (shape ``(R,)``)."""
        return int(mask.sum() if self.lengths is None else self.lengths[mask].sum())

    def confusion(self, num_classes: int, ignore_label: int) -> SparseConfusion:
        """The pair's confusion; ground truth equal to ``ignore_label`` (which must be >= K) is dropped."""
        k = num_classes
        if ignore_label < k:
            raise ValueError(f"ignore label {ignore_label} collides with class ids 0..{k - 1}")
        # gt in 0..K-1 gives items below K*K; the ignore label (>= K) gives items >= K*K: one spill bin
        spill = k * k
        items = np.minimum(self.gt.astype(np.int64) * k + self.pred, spill)
        if spill <= DENSE_LIMIT:
            dense = np.bincount(items, weights=self.lengths, minlength=spill + 1)[:spill]
            cells = np.flatnonzero(dense)
            counts = dense[cells]
        else:
            cells, inverse = np.unique(items, return_inverse=True)
            counts = np.bincount(inverse, weights=self.lengths, minlength=cells.size)
            if cells.size and cells[-1] == spill:
                cells, counts = cells[:-1], counts[:-1]
        return SparseConfusion(num_classes=k, cells=cells, counts=counts.astype(np.int64))


def image_confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_label: int) -> SparseConfusion:
    """Confusion of one prediction against its ground truth.

    ``pred`` and ``gt`` are integer label maps of the same shape ``(H, W)``; ``pred`` values lie
    in ``0..K-1``; ``gt`` pixels equal to ``ignore_label`` (>= K, as every protocol's is) are
    dropped. Counted over runs (see :class:`LabelRuns`): exact, and cheap for segmentation maps.
    """
    return LabelRuns.encode(pred, gt).confusion(num_classes, ignore_label)


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
