"""Slow, literal DAVIS 2017 J and F for one object: the oracle for tests and the speed baseline.

Each function follows the definitions of davis2017-evaluation (``davis2017/metrics.py`` at
ac7c43f) step by step, on full frames, one object at a time, with OpenCV's ``dilate`` and the
disk structuring element of ``skimage.morphology.disk`` (``x² + y² <= r²``), as the reference
computes them. :mod:`ovbench.metrics.davis` is the fast implementation; the tests check that the
two agree and that this module reproduces numbers produced by the reference code itself.

OpenCV (``cv2``) is installed with ``lvis``, one of ovbench's dependencies.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def disk(radius: int) -> np.ndarray:
    """``(2r+1, 2r+1)`` uint8 footprint with 1 where ``dx² + dy² <= r²`` (skimage's ``disk``)."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2).astype(np.uint8)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The reference's 1-pixel boundary of a binary ``(H, W)`` mask, as a bool ``(H, W)`` map.

    A pixel is on the boundary when it differs from its east, south or south-east neighbour
    (missing neighbours beyond the image count as 0); the last row then only compares with the
    east neighbour, the last column only with the south one, and the bottom-right pixel is never
    a boundary pixel.
    """
    seg = mask.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def jaccard(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """Region similarity of two ``(H, W)`` binary masks, void pixels excluded; 1 for an empty union."""
    valid = np.ones(gt.shape, bool) if void is None else ~void.astype(bool)
    gt, pred = gt.astype(bool), pred.astype(bool)
    inter = int(np.sum(gt & pred & valid))
    union = int(np.sum((gt | pred) & valid))
    return 1.0 if union == 0 else inter / union


def f_measure(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None, bound_th: float = 0.008) -> float:
    """Boundary F-measure of two ``(H, W)`` binary masks with the reference's tolerance and special cases."""
    valid = np.ones(gt.shape, bool) if void is None else ~void.astype(bool)
    if bound_th >= 1:
        radius = int(bound_th)
    else:
        radius = math.ceil(bound_th * math.sqrt(gt.shape[0] ** 2 + gt.shape[1] ** 2))
    pred_b = boundary_map(pred.astype(bool) & valid).astype(np.uint8)
    gt_b = boundary_map(gt.astype(bool) & valid).astype(np.uint8)
    footprint = disk(radius)
    pred_dil = cv2.dilate(pred_b, footprint)
    gt_dil = cv2.dilate(gt_b, footprint)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = int(np.sum(pred_b & gt_dil)) / float(n_pred)
        recall = int(np.sum(gt_b & pred_dil)) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def jf_label_maps_direct(gt: np.ndarray, pred: np.ndarray, object_ids: list[int],
                         void: np.ndarray | None = None, bound_th: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """J and F, shape ``(len(object_ids),)``, of one frame of label maps, one object at a time."""
    j = np.array([jaccard(gt == k, pred == k, void) for k in object_ids], dtype=np.float64)
    f = np.array([f_measure(gt == k, pred == k, void, bound_th) for k in object_ids], dtype=np.float64)
    return j, f
