"""DAVIS 2017 region (J) and boundary (F) measures, as davis2017-evaluation defines them, fast.

Definitions (``davis2017/metrics.py`` and ``utils.py`` of davisvideochallenge/davis2017-evaluation
at ac7c43f; :mod:`ovbench.metrics.davis_direct` is a literal slow transcription used as oracle):

* **J** = |P ∩ G| / |P ∪ G| over the non-void pixels; 1 when the union is empty.
* **F**: each mask is multiplied by not-void, its 1-pixel boundary taken (a pixel is a boundary
  pixel when it differs from an existing east, south or south-east neighbour — which gives the
  reference's rules for the last row, last column and bottom-right pixel), each boundary dilated
  by the disk ``dx² + dy² <= r²`` with ``r = ceil(0.008 · ‖(H, W)‖)`` (8 px at 854×480);
  precision = predicted boundary pixels within the GT dilation / predicted boundary pixels,
  recall likewise; empty predicted boundary ⇒ (P, R) = (1, 0), empty GT boundary ⇒ (0, 1), both
  empty ⇒ (1, 1); F = 2PR / (P + R), 0 when P + R = 0.

How it is fast (results are bit-identical to the full-frame computation):

* J from run lengths: the flattened (GT, prediction) pair of label maps changes value at few
  positions; one ``bincount`` over the runs gives every object's intersection and areas.
* Boundaries of all objects at once from the neighbour-difference maps of the label map; only the
  few pixels where the label map changes are looked at further.
* Matching restricted to the sparse boundary pixels: the disk is a union of horizontal runs
  ``|dx| <= isqrt(r² − dy²)``, ``|dy| <= r``, so "a destination boundary pixel lies in the disk
  around p" is, for each of the 2r+1 rows, a range count in a row prefix count of the destination
  boundary, looked up at p. The prefix counts cover only the window where a match is possible.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


def boundary_tolerance(height: int, width: int, bound_th: float = 0.008) -> int:
    """Dilation radius in pixels: ``ceil(bound_th · sqrt(H² + W²))``, or ``bound_th`` itself if >= 1.

    ``bound_th >= 1`` means a radius in pixels, as in the reference; it must then be a whole number.
    """
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"bound_th={bound_th}: a radius in pixels must be a whole number")
        return int(bound_th)
    if bound_th <= 0:
        raise ValueError(f"bound_th={bound_th} must be positive")
    return math.ceil(bound_th * math.sqrt(height * height + width * width))


def _disk_rows(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Row offsets ``dy`` in ``[-r, r]`` and the half-width ``isqrt(r² - dy²)`` of the disk on each."""
    dy = np.arange(-radius, radius + 1)
    return dy, np.array([math.isqrt(radius * radius - d * d) for d in dy], dtype=np.int64)


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(starts[i], stops[i])`` over ``i``."""
    lengths = stops - starts
    total = int(lengths.sum())
    shift = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return shift + np.arange(total)


def _changes(flat: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Boundary candidates of a flattened ``(H, W)`` map and its east-difference map.

    Returns the sorted flat indices of the pixels that differ from an existing east, south or
    south-east neighbour, and ``flat[:-1] != flat[1:]`` (its entries at the end of a row compare
    with the next row's first pixel). For interior pixels "differs from the south-east neighbour
    while equal to the east and south ones" is "the south neighbour differs from its east
    neighbour", so the south-east comparison reuses the east differences one row down.
    """
    n = flat.size
    east = flat[:-1] != flat[1:]
    if n <= width:  # one row: east neighbours only
        return np.flatnonzero(east), east
    cand = flat[:-width] != flat[width:]  # south differences, rows 0 .. H-2
    cand[:-1] |= east[:n - width - 1]
    cand[:-1] |= east[width:n - 1]
    cand[width - 1::width] = flat[width - 1:n - width:width] != flat[2 * width - 1::width]  # last column
    last_row = np.flatnonzero(east[n - width:]) + (n - width)
    return np.concatenate([np.flatnonzero(cand), last_row]), east


class _Boundaries:
    """Boundary pixels of several masks ("sets"), grouped by set, each in row-major order.

    ``y``, ``x``: coordinates of all boundary pixels; set ``s`` owns ``start[s]:start[s + 1]``.
    """

    def __init__(self, set_ids: np.ndarray, flat_pos: np.ndarray, num_sets: int, width: int) -> None:
        self.y, self.x = np.divmod(flat_pos, width)
        self.start = np.searchsorted(set_ids, np.arange(num_sets + 1))
        self.count = np.diff(self.start)
        nonempty = self.count > 0
        self.lo_y = np.zeros(num_sets, np.int64)
        self.hi_y = np.zeros(num_sets, np.int64)
        self.lo_x = np.zeros(num_sets, np.int64)
        self.hi_x = np.zeros(num_sets, np.int64)
        if self.y.size:
            first = self.start[:-1][nonempty]
            self.lo_y[nonempty] = self.y[first]  # row-major order: first and last pixel bound y
            self.hi_y[nonempty] = self.y[self.start[1:][nonempty] - 1]
            self.lo_x[nonempty] = np.minimum.reduceat(self.x, first)
            self.hi_x[nonempty] = np.maximum.reduceat(self.x, first)


def _label_boundaries(flat: np.ndarray, cand: np.ndarray, height: int, width: int,
                      lut: np.ndarray, num_objects: int) -> _Boundaries:
    """Boundaries of every object of a flattened label map; ``lut`` maps labels to 1..K (0: none).

    At a candidate pixel p with label a, object k is on the boundary when a = k and some existing
    east/south/south-east neighbour is not k, or a != k and such a neighbour is k. Each (k, p) is
    emitted once.
    """
    n = flat.size
    col = cand % width
    east = np.where(col < width - 1, cand + 1, cand)  # a missing neighbour is the pixel itself
    south = np.where(cand < n - width, cand + width, cand)
    south_east = np.where((col < width - 1) & (cand < n - width), cand + width + 1, cand)
    a, e, s, se = (lut[flat[i]] for i in (cand, east, south, south_east))
    de, ds, dse = e != a, s != a, se != a
    groups = ((a, (a != 0) & (de | ds | dse)),
              (e, de & (e != 0)),
              (s, ds & (s != 0) & (s != e)),
              (se, dse & (se != 0) & (se != e) & (se != s)))
    keys = np.sort(np.concatenate([(lab[m].astype(np.int64) - 1) * n + cand[m] for lab, m in groups]),
                   kind="stable")
    set_ids, pos = np.divmod(keys, n)
    return _Boundaries(set_ids, pos, num_objects, width)


def _match_counts(bnd: _Boundaries, src: np.ndarray, dst: np.ndarray, radius: int) -> np.ndarray:
    """For each problem i, how many boundary pixels of set ``src[i]`` lie within the disk of radius
    ``radius`` around some boundary pixel of set ``dst[i]`` (the reference's dilate-and-count)."""
    out = np.zeros(src.size, np.int64)
    r = radius
    # Only source pixels within r rows/columns of the destination's bounding box can match.
    y0 = np.maximum(bnd.lo_y[src], bnd.lo_y[dst] - r)
    y1 = np.minimum(bnd.hi_y[src], bnd.hi_y[dst] + r)
    x0 = np.maximum(bnd.lo_x[src], bnd.lo_x[dst] - r)
    x1 = np.minimum(bnd.hi_x[src], bnd.hi_x[dst] + r)
    live = np.flatnonzero((bnd.count[src] > 0) & (bnd.count[dst] > 0) & (y0 <= y1) & (x0 <= x1))
    if live.size == 0:
        return out
    y0, y1, x0, x1 = y0[live], y1[live], x0[live], x1[live]
    # Window of each live problem: rows y0-r .. y1+r, columns x0-r-1 .. x1+r, laid end to end.
    w = x1 - x0 + 2 * r + 2
    size = (y1 - y0 + 2 * r + 1) * w
    offset = np.cumsum(size) - size

    def points(sets: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat window positions of the pixels of ``sets`` (one per live problem) inside the
        problem's box grown by ``margin``, and the live-problem index of each."""
        idx = _ranges(bnd.start[sets], bnd.start[sets + 1])
        prob = np.repeat(np.arange(live.size), bnd.count[sets])
        y, x = bnd.y[idx], bnd.x[idx]
        keep = ((y >= y0[prob] - margin) & (y <= y1[prob] + margin)
                & (x >= x0[prob] - margin) & (x <= x1[prob] + margin))
        prob = prob[keep]
        flat = offset[prob] + (y[keep] - y0[prob] + r) * w[prob] + (x[keep] - x0[prob] + r + 1)
        return flat, prob

    dst_flat, _ = points(dst[live], r)  # sorted: problems in order, each in row-major order
    # prefix[i] = number of destination pixels at window positions <= i
    gaps = np.diff(np.concatenate([[0], dst_flat, [int(size.sum())]]))
    prefix = np.repeat(np.arange(dst_flat.size + 1, dtype=np.int32), gaps)
    src_flat, src_prob = points(src[live], 0)
    dy, half = _disk_rows(r)
    lo = src_flat[None, :] + dy[:, None] * w[src_prob][None, :] - (half + 1)[:, None]
    hi = lo + (2 * half + 1)[:, None]
    hit = (prefix[hi] != prefix[lo]).any(axis=0)
    out[live] = np.bincount(src_prob[hit], minlength=live.size)
    return out


def _f_from_counts(n_pred: np.ndarray, n_gt: np.ndarray, matched_pred: np.ndarray,
                   matched_gt: np.ndarray) -> np.ndarray:
    """F from boundary pixel counts, with the reference's special cases for empty boundaries."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, matched_pred / n_pred.astype(np.float64), 1.0)
        recall = np.where(n_gt > 0, matched_gt / n_gt.astype(np.float64), 1.0)
        precision = np.where((n_pred > 0) & (n_gt == 0), 0.0, precision)
        recall = np.where((n_pred == 0) & (n_gt > 0), 0.0, recall)
        denom = precision + recall
        return np.where(denom == 0, 0.0, 2 * precision * recall / denom)


def _j_from_counts(inter: np.ndarray, area_gt: np.ndarray, area_pred: np.ndarray) -> np.ndarray:
    union = area_gt + area_pred - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union == 0, 1.0, inter / union)


def _check_frame(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None) -> None:
    if gt.shape[-2:] != pred.shape[-2:] or (void is not None and void.shape != gt.shape[-2:]):
        raise ValueError(f"frame sizes differ: gt {gt.shape}, pred {pred.shape}"
                         + ("" if void is None else f", void {void.shape}"))
    if 0 in gt.shape[-2:]:
        raise ValueError(f"empty frame of shape {gt.shape}")


def jf_label_maps(gt: np.ndarray, pred: np.ndarray, object_ids: Sequence[int], void: np.ndarray | None = None,
                  bound_th: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """J and F of one frame of label maps, one value per object id (semi-supervised scoring).

    ``gt``, ``pred``: ``(H, W)`` non-negative integer label maps (pixel = object id, 0 background);
    object ``k`` is ``gt == k`` against ``pred == k``; labels not in ``object_ids`` are background.
    ``void``: optional ``(H, W)`` bool, pixels excluded from J and zeroed in both maps before the
    boundaries are taken. Returns ``(J, F)``, float64 arrays of shape ``(len(object_ids),)``.
    """
    _check_frame(gt, pred, void)
    ids = np.asarray(object_ids, dtype=np.int64).reshape(-1)
    k = ids.size
    if k == 0:
        return np.zeros(0), np.zeros(0)
    if ids.min() <= 0 or np.unique(ids).size != k:
        raise ValueError(f"object ids must be distinct and positive, got {list(object_ids)}")
    height, width = gt.shape
    if void is not None:
        gt, pred = np.where(void, 0, gt), np.where(void, 0, pred)
    gflat, pflat = np.ascontiguousarray(gt).ravel(), np.ascontiguousarray(pred).ravel()
    g_cand, g_east = _changes(gflat, width)
    p_cand, p_east = _changes(pflat, width)
    # Runs of the (gt, pred) pair along the flattened frame: every label value present starts one.
    starts = np.concatenate([[0], np.flatnonzero(g_east | p_east) + 1])
    lengths = np.diff(np.concatenate([starts, [gflat.size]]))
    g_run, p_run = gflat[starts], pflat[starts]
    if min(g_run.min(), p_run.min()) < 0:
        raise ValueError("label maps must not contain negative values")
    lut = np.zeros(max(int(ids.max()), int(g_run.max()), int(p_run.max())) + 1, np.int64)
    lut[ids] = np.arange(1, k + 1)
    g_obj, p_obj = lut[g_run], lut[p_run]
    area_g = np.bincount(g_obj, lengths, minlength=k + 1)[1:]
    area_p = np.bincount(p_obj, lengths, minlength=k + 1)[1:]
    same = g_obj == p_obj
    inter = np.bincount(g_obj[same], lengths[same], minlength=k + 1)[1:]
    j = _j_from_counts(inter, area_g, area_p)

    # Boundary sets 0..K-1: GT objects; K..2K-1: predicted objects.
    g_b = _label_boundaries(gflat, g_cand, height, width, lut, k)
    p_b = _label_boundaries(pflat, p_cand, height, width, lut, k)
    bnd = _merge(g_b, p_b, width)
    objs = np.arange(k)
    matched = _match_counts(bnd, np.concatenate([objs + k, objs]), np.concatenate([objs, objs + k]),
                            boundary_tolerance(height, width, bound_th))
    f = _f_from_counts(p_b.count, g_b.count, matched[:k], matched[k:])
    return j, f


def _merge(first: _Boundaries, second: _Boundaries, width: int) -> _Boundaries:
    """One :class:`_Boundaries` holding the sets of ``first`` followed by those of ``second``."""
    n1, n2 = first.count.size, second.count.size
    set_ids = np.concatenate([np.repeat(np.arange(n1), first.count), np.repeat(np.arange(n2) + n1, second.count)])
    flat = np.concatenate([first.y * width + first.x, second.y * width + second.x])
    return _Boundaries(set_ids, flat, n1 + n2, width)


def _mask_boundaries(masks: np.ndarray, width: int) -> _Boundaries:
    """Boundaries of a stack of ``(M, H, W)`` bool masks, one set per mask."""
    parts = [_changes(m.view(np.uint8).ravel(), width)[0] for m in masks]
    set_ids = np.repeat(np.arange(len(parts)), [p.size for p in parts])
    return _Boundaries(set_ids, np.concatenate(parts) if parts else np.zeros(0, np.int64), len(parts), width)


def _popcounts(masks: np.ndarray) -> np.ndarray:
    """``(M, H*W/64)`` uint64 words holding each ``(H, W)`` bool mask's bits, zero padded."""
    packed = np.packbits(masks.reshape(masks.shape[0], -1), axis=1)
    pad = (-packed.shape[1]) % 8
    return np.pad(packed, ((0, 0), (0, pad))).view(np.uint64)


def jf_pairs(gt_masks: np.ndarray, pred_masks: np.ndarray, void: np.ndarray | None = None,
             bound_th: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every (prediction, GT object) pair of one frame (unsupervised scoring).

    ``gt_masks``: ``(K, H, W)`` bool; ``pred_masks``: ``(N, H, W)`` bool, may overlap; ``void``:
    optional ``(H, W)`` bool, excluded from J and removed from both masks before their boundaries
    are taken. Returns ``(J, F)``, float64 arrays of shape ``(N, K)``.
    """
    _check_frame(gt_masks, pred_masks, void)
    gt_masks, pred_masks = gt_masks.astype(bool), pred_masks.astype(bool)
    if void is not None:
        valid = ~void.astype(bool)
        gt_masks, pred_masks = gt_masks & valid, pred_masks & valid
    kk, nn = gt_masks.shape[0], pred_masks.shape[0]
    height, width = gt_masks.shape[1:]
    g_words, p_words = _popcounts(gt_masks), _popcounts(pred_masks)
    inter = np.bitwise_count(p_words[:, None, :] & g_words[None, :, :]).sum(axis=2, dtype=np.int64)
    area_g = np.bitwise_count(g_words).sum(axis=1, dtype=np.int64)
    area_p = np.bitwise_count(p_words).sum(axis=1, dtype=np.int64)
    j = _j_from_counts(inter, area_g[None, :], area_p[:, None])

    # Boundary sets 0..K-1: GT masks; K..K+N-1: predicted masks. Problems: (n, k) in row-major order.
    bnd = _merge(_mask_boundaries(gt_masks, width), _mask_boundaries(pred_masks, width), width)
    preds = np.repeat(np.arange(nn) + kk, kk)
    gts = np.tile(np.arange(kk), nn)
    radius = boundary_tolerance(height, width, bound_th)
    matched_pred = _match_counts(bnd, preds, gts, radius).reshape(nn, kk)
    matched_gt = _match_counts(bnd, gts, preds, radius).reshape(nn, kk)
    f = _f_from_counts(bnd.count[kk:][:, None], bnd.count[:kk][None, :], matched_pred, matched_gt)
    return j, f


def statistics(per_frame: np.ndarray) -> dict[str, float]:
    """Mean, Recall and Decay of one object's per-frame scores, shape ``(T,)``, T >= 1.

    ``mean``: nanmean; ``recall``: fraction of frames scoring > 0.5 (NaN frames count as misses);
    ``decay``: nanmean of the first quarter minus nanmean of the last, the 4 bins being
    ``v[i_b : i_{b+1} + 1]`` with ``i = round(linspace(1, T, 5) + 1e-10) - 1`` (neighbouring bins
    share a frame). Identical to the reference's ``db_statistics`` for T <= 256. The reference casts
    the bin indices with ``astype(np.uint8)``, so beyond 256 frames they wrap modulo 256 and its
    Decay is wrong or NaN; here the indices are exact for any T.
    """
    values = np.asarray(per_frame, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ValueError("statistics of an empty per-frame series")
    ids = (np.round(np.linspace(1, values.size, 5) + 1e-10) - 1).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values)
        recall = np.nanmean(values > 0.5)
        decay = np.nanmean(values[ids[0]:ids[1] + 1]) - np.nanmean(values[ids[3]:ids[4] + 1])
    return {"mean": float(mean), "recall": float(recall), "decay": float(decay)}


def match_unsupervised(j: np.ndarray, f: np.ndarray, j_empty: np.ndarray | None = None,
                       f_empty: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Assign proposals to GT objects as the reference does (Hungarian on mean (J+F)/2 over frames).

    ``j``, ``f``: ``(N, K, T)`` scores of N proposals against K objects over T frames. With fewer
    proposals than objects the reference adds empty proposals; ``j_empty``, ``f_empty`` (``(K, T)``,
    the scores of an empty mask, e.g. from :func:`jf_pairs` with one all-False prediction) are then
    required. Returns ``(J, F, assignment)``: ``(K, T)`` scores of the proposal matched to each
    object and ``(K,)`` proposal indices (-1: an empty proposal).

    Unlike the reference, whose per-object rows come out in proposal order and are then labelled
    object 1, 2, ..., rows here are in GT-object order; the set of rows (so every global number)
    is the same.
    """
    nn, kk, tt = j.shape
    if f.shape != j.shape:
        raise ValueError(f"j {j.shape} and f {f.shape} differ")
    if nn < kk:
        if j_empty is None or f_empty is None:
            raise ValueError(f"{nn} proposals for {kk} objects: pass j_empty and f_empty, the scores of an empty mask")
        j = np.concatenate([j, np.broadcast_to(j_empty, (kk - nn, kk, tt))])
        f = np.concatenate([f, np.broadcast_to(f_empty, (kk - nn, kk, tt))])
    score = (np.mean(j, axis=2) + np.mean(f, axis=2)) / 2
    rows, cols = linear_sum_assignment(-score)
    j_out, f_out = np.zeros((kk, tt)), np.zeros((kk, tt))
    j_out[cols], f_out[cols] = j[rows, cols], f[rows, cols]
    assignment = np.full(kk, -1, np.int64)
    assignment[cols] = np.where(rows < nn, rows, -1)
    return j_out, f_out, assignment
