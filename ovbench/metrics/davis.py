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

How it is fast (the counts are exactly those of the full-frame computation):

* J from run lengths: the flattened (GT, prediction) pair of label maps is cut into runs at the
  few pixels where either map changes; ``bincount`` over the runs gives every object's area and
  intersection at once.
* Boundaries: three comparisons of the whole label map find the pixels that differ from an
  east, south or south-east neighbour; at those pixels alone, object k is on the boundary exactly
  when k is the label of the pixel or of one of those neighbours, so all objects' boundaries come
  from one pass over a few thousand pixels.
* Matching: the disk is the union of the horizontal runs ``|dx| <= isqrt(r² - dy²)``,
  ``|dy| <= r``. Each object's GT and predicted boundaries are bit-packed, 64 pixels per word,
  into a window around their joint bounding box; a dilation is then the OR over ``dy`` of the
  window's rows dilated horizontally by the run's half-width (word shifts, widths built by
  doubling) and moved by ``dy`` rows (a whole number of words), and the matched counts are the
  popcounts of one boundary ANDed with the other's dilation. The windows of all objects (or all
  pairs) are processed together.
* :func:`jf_label_map_stack` scores a few frames per call: the full-frame comparisons run frame by
  frame (in cache), everything after them once for all frames.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


#: Objects scored in one pass of :func:`jf_label_map_stack` (bits of a uint64).
_MAX_OBJECTS = 64
#: Most uint64 words of matching windows processed at once (8 MiB per copy).
_WORD_BUDGET = 1 << 20


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


def _changes(flat: np.ndarray, width: int) -> np.ndarray:
    """Sorted flat indices of the pixels of a flattened ``(H, W)`` frame that differ from an
    existing east, south or south-east neighbour.

    For interior pixels "differs from the south-east neighbour while equal to the east and south
    ones" is "the south neighbour differs from its east neighbour", so the south-east comparison
    reuses the east differences one row down.
    """
    n = flat.size
    east = flat[:-1] != flat[1:]  # at the end of a row: against the next row's first pixel
    if n <= width:  # one row: east neighbours only
        return np.flatnonzero(east)
    cand = flat[:-width] != flat[width:]  # south differences, rows 0 .. H-2
    cand[:-1] |= east[:n - width - 1]
    cand[:-1] |= east[width:n - 1]
    cand[width - 1::width] = flat[width - 1:n - width:width] != flat[2 * width - 1::width]  # last column
    return np.concatenate([np.flatnonzero(cand), np.flatnonzero(east[n - width:]) + (n - width)])


def _stack_changes(flat: np.ndarray, width: int, height: int) -> np.ndarray:
    """:func:`_changes` of each frame of flattened ``(T, H, W)`` frames, as indices into ``flat``.
    One frame at a time keeps the full-frame passes in cache."""
    size = width * height
    parts = [_changes(flat[i:i + size], width) + i for i in range(0, flat.size, size)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


class _Boundaries:
    """Boundary pixels of several masks ("sets"), each set in row-major order.

    ``y``, ``x``: coordinates in the frame of all boundary pixels, set ``s`` owning
    ``start[s]:start[s + 1]``; ``lo_y``, ``hi_y``, ``lo_x``, ``hi_x``: each set's bounding box
    (meaningless when empty).
    """

    def __init__(self, set_ids: np.ndarray, y: np.ndarray, x: np.ndarray, num_sets: int) -> None:
        self.y, self.x = y, x
        self.start = np.searchsorted(set_ids, np.arange(num_sets + 1))
        self.count = np.diff(self.start)
        nonempty = self.count > 0
        first, last = self.start[:-1][nonempty], self.start[1:][nonempty] - 1
        self.lo_y, self.hi_y, self.lo_x, self.hi_x = (np.zeros(num_sets, np.int64) for _ in range(4))
        if first.size:
            self.lo_y[nonempty], self.hi_y[nonempty] = y[first], y[last]
            self.lo_x[nonempty] = np.minimum.reduceat(x, first)
            self.hi_x[nonempty] = np.maximum.reduceat(x, first)


def _label_boundaries(flat: np.ndarray, cand: np.ndarray, height: int, width: int, ids: np.ndarray,
                      bit_of_label: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boundary pixels of each object in each frame of flattened ``(T, H, W)`` label maps.

    Returns ``(set, y, x)`` sorted by set, ``set = i * T + t`` for object ``ids[i]`` in frame t.
    ``cand`` holds the pixels that differ from an existing east/south/south-east neighbour; at
    such a pixel the mask of object k differs from one of those neighbours exactly when k is the
    label of the pixel or of one of them. ``bit_of_label[v]`` is ``1 << i`` for ``v = ids[i]``, else 0.
    """
    frames = flat.size // (height * width)
    row = cand // width  # (integer division by a scalar is much faster than np.divmod)
    x = cand - row * width
    frame = row // height
    y = row - frame * height
    has_east, has_south = x < width - 1, y < height - 1
    present = bit_of_label.take(flat.take(cand))  # a missing neighbour reads the pixel itself
    present |= bit_of_label.take(flat.take(cand + has_east))
    present |= bit_of_label.take(flat.take(cand + width * has_south))
    present |= bit_of_label.take(flat.take(cand + (width + 1) * (has_east & has_south)))
    member = (present[None, :] & np.left_shift(np.uint64(1), np.arange(ids.size, dtype=np.uint64))[:, None]) != 0
    hit = np.flatnonzero(member)  # object-major, then row-major
    obj = hit // cand.size
    idx = hit - obj * cand.size
    return obj * frames + frame.take(idx), y.take(idx), x.take(idx)


def _spread(words: np.ndarray, shift: int) -> np.ndarray:
    """OR of a bit string (uint64 words, bit i of word q = position 64q + i) with itself moved by
    ``+shift`` and ``-shift`` positions, 1 <= shift <= 63."""
    s, back = np.uint64(shift), np.uint64(64 - shift)
    out = words | (words << s) | (words >> s)
    out[1:] |= words[:-1] >> back
    out[:-1] |= words[1:] << back
    return out


def _dilate(words: np.ndarray, row_words: int, radius: int) -> np.ndarray:
    """Dilation by the disk of radius ``radius`` of bitmaps stored row after row, ``row_words``
    uint64 words per row. Bits moved across a row end or past the first/last row are not
    meaningful; callers leave ``radius`` empty columns and rows around their content."""
    dy, half = _disk_rows(radius)
    out = words.copy()
    n = words.size
    reach, current = 0, words
    for h in sorted(set(half.tolist())):  # widen rows step by step, OR each width into its rows
        while reach < h:  # B ⊕ [-c, c] ⊕ {-s, 0, s} = B ⊕ [-(c+s), c+s] for s <= 2c + 1
            step = min(h - reach, 2 * reach + 1, 63)
            current, reach = _spread(current, step), reach + step
        for d in dy[half == h].tolist():
            shift = d * row_words
            if d > 0:
                out[shift:] |= current[:n - shift]
            elif d < 0:
                out[:n + shift] |= current[-shift:]
            else:
                out |= current
    return out


def _match_counts(bnd: _Boundaries, a: np.ndarray, b: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """For each problem i: how many boundary pixels of set ``a[i]`` lie within the disk of radius
    ``radius`` around a boundary pixel of set ``b[i]``, and vice versa (the reference's dilate,
    multiply and sum)."""
    a_hits, b_hits = np.zeros(a.size, np.int64), np.zeros(a.size, np.int64)
    r = radius
    near = ((bnd.lo_y[a] <= bnd.hi_y[b] + r) & (bnd.lo_y[b] <= bnd.hi_y[a] + r)
            & (bnd.lo_x[a] <= bnd.hi_x[b] + r) & (bnd.lo_x[b] <= bnd.hi_x[a] + r))
    live = np.flatnonzero((bnd.count[a] > 0) & (bnd.count[b] > 0) & near)
    # One window per live problem: the joint bounding box of its two boundaries with r empty rows
    # and at least r empty columns around, in rows of row_words words; windows laid end to end,
    # as many problems at a time as fit in _WORD_BUDGET words.
    lo_y, hi_y = np.minimum(bnd.lo_y[a], bnd.lo_y[b])[live], np.maximum(bnd.hi_y[a], bnd.hi_y[b])[live]
    lo_x, hi_x = np.minimum(bnd.lo_x[a], bnd.lo_x[b])[live], np.maximum(bnd.hi_x[a], bnd.hi_x[b])[live]
    rows = hi_y - lo_y + 2 * r + 1
    row_words = (hi_x - lo_x + 2 * r + 1 + 63) // 64
    batch = np.cumsum(rows * row_words.max(initial=0)) // _WORD_BUDGET
    for part in np.split(np.arange(live.size), np.flatnonzero(np.diff(batch)) + 1):
        if part.size:
            a_hits[live[part]], b_hits[live[part]] = _window_counts(
                bnd, a[live[part]], b[live[part]], lo_y[part] - r, lo_x[part] - r, rows[part],
                int(row_words[part].max()), r)
    return a_hits, b_hits


def _window_counts(bnd: _Boundaries, a: np.ndarray, b: np.ndarray, y0: np.ndarray, x0: np.ndarray,
                   rows: np.ndarray, row_words: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_match_counts` of problems whose windows start at row ``y0``, column ``x0`` and have
    ``rows`` rows of ``row_words`` words."""
    woff = (np.cumsum(rows) - rows) * row_words
    total = int(rows.sum()) * row_words

    def bit_index(sets: np.ndarray, base: int) -> np.ndarray:
        """Bit of each pixel of ``sets`` (one set per problem) in the windows after ``base`` words."""
        origin = (base + woff - y0 * row_words) * 64 - x0  # bit of pixel (0, 0) in each problem's frame
        idx = _ranges(bnd.start[sets], bnd.start[sets + 1])
        return np.repeat(origin, bnd.count[sets]) + bnd.y.take(idx) * (row_words * 64) + bnd.x.take(idx)

    bits = np.concatenate([bit_index(a, 0), bit_index(b, total)])  # increasing
    word = bits >> 6
    first = np.flatnonzero(np.concatenate([[True], word[1:] != word[:-1]]))
    words = np.zeros(2 * total, np.uint64)
    words[word[first]] = np.bitwise_or.reduceat(np.left_shift(np.uint64(1), (bits & 63).astype(np.uint64)), first)
    dilated = _dilate(words, row_words, r)
    return (np.add.reduceat(np.bitwise_count(words[:total] & dilated[total:]), woff, dtype=np.int64),
            np.add.reduceat(np.bitwise_count(words[total:] & dilated[:total]), woff, dtype=np.int64))


def _f_from_counts(n_pred: np.ndarray, n_gt: np.ndarray, matched_pred: np.ndarray,
                   matched_gt: np.ndarray) -> np.ndarray:
    """F from boundary pixel counts, with the reference's special cases for empty boundaries: an
    empty side scores 1 and, having nothing to match, gives the other side 0 matches."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, matched_pred / n_pred.astype(np.float64), 1.0)
        recall = np.where(n_gt > 0, matched_gt / n_gt.astype(np.float64), 1.0)
        denom = precision + recall
        return np.where(denom == 0, 0.0, 2 * precision * recall / denom)


def _j_from_counts(inter: np.ndarray, area_gt: np.ndarray, area_pred: np.ndarray) -> np.ndarray:
    union = area_gt + area_pred - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union == 0, 1.0, inter / union)


def _check_shapes(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None, ndim: int, stacked: bool) -> None:
    """``gt`` and ``pred`` have ``ndim`` dimensions and the same frame size (the same shape unless
    they are stacks of masks); ``void`` has the shape of one frame, or of ``gt`` for label maps."""
    if gt.ndim != ndim or pred.ndim != ndim:
        raise ValueError(f"expected {ndim}-d arrays, got gt {gt.shape} and pred {pred.shape}")
    frame = gt.shape[1:] if stacked else gt.shape
    if (pred.shape[1:] if stacked else pred.shape) != frame or (void is not None and void.shape != frame):
        void_shape = "" if void is None else f", void {void.shape}"
        raise ValueError(f"shapes differ: gt {gt.shape}, pred {pred.shape}{void_shape}")
    if 0 in gt.shape[-2:]:
        raise ValueError(f"empty frames: {gt.shape}")


def jf_label_maps(gt: np.ndarray, pred: np.ndarray, object_ids: Sequence[int], void: np.ndarray | None = None,
                  bound_th: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """J and F of one frame of label maps, one value per object id (semi-supervised scoring).

    ``gt``, ``pred``: ``(H, W)`` non-negative integer label maps (pixel = object id, 0 background);
    object ``k`` is ``gt == k`` against ``pred == k``; labels not in ``object_ids`` are background.
    ``void``: optional ``(H, W)`` bool, pixels excluded from J and zeroed in both maps before the
    boundaries are taken. Returns ``(J, F)``, float64 arrays of shape ``(len(object_ids),)``.
    """
    _check_shapes(gt, pred, void, 2, stacked=False)
    j, f = jf_label_map_stack(gt[None], pred[None], object_ids, None if void is None else void[None], bound_th)
    return j[0], f[0]


def jf_label_map_stack(gt: np.ndarray, pred: np.ndarray, object_ids: Sequence[int], void: np.ndarray | None = None,
                       bound_th: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """:func:`jf_label_maps` of T frames at once (faster per frame): ``gt``, ``pred`` and ``void``
    of shape ``(T, H, W)``; returns ``(J, F)`` of shape ``(T, len(object_ids))``.

    Working memory is a few bytes per pixel of the stack; pass a few frames at a time.
    """
    _check_shapes(gt, pred, void, 3, stacked=False)
    ids = np.asarray(object_ids, dtype=np.int64).reshape(-1)
    k = ids.size
    if k and (ids.min() <= 0 or np.unique(ids).size != k):
        raise ValueError(f"object ids must be distinct and positive, got {list(object_ids)}")
    if k > _MAX_OBJECTS:  # boundary membership is a bit mask of the objects
        parts = [jf_label_map_stack(gt, pred, ids[i:i + _MAX_OBJECTS], void, bound_th)
                 for i in range(0, k, _MAX_OBJECTS)]
        return np.concatenate([p[0] for p in parts], axis=1), np.concatenate([p[1] for p in parts], axis=1)
    frames, height, width = gt.shape
    if k == 0 or frames == 0:
        return np.zeros((frames, k)), np.zeros((frames, k))
    if void is not None:
        gt, pred = np.where(void, 0, gt), np.where(void, 0, pred)
    gflat, pflat = np.ascontiguousarray(gt).ravel(), np.ascontiguousarray(pred).ravel()
    g_cand, p_cand = _stack_changes(gflat, width, height), _stack_changes(pflat, width, height)
    # Runs of the (gt, pred) pair along the flattened frames. Each change of either map is a
    # candidate's east edge or a row end; extra (and repeated) run starts only add empty runs.
    starts = np.sort(np.concatenate([g_cand + 1, p_cand + 1, np.arange(0, gflat.size, width)]))
    lengths = np.diff(np.concatenate([starts, [gflat.size]]))
    g_run, p_run = gflat.take(starts), pflat.take(starts)
    if min(g_run.min(), p_run.min()) < 0:
        raise ValueError("label maps must not contain negative values")
    size = max(int(ids.max()), int(g_run.max()), int(p_run.max())) + 1
    index = np.full(size, k, np.int64)  # object index of a label; k: not an object
    index[ids] = np.arange(k)
    frame_base = starts // (height * width) * (k + 1)
    g_key, p_key = frame_base + index.take(g_run), frame_base + index.take(p_run)

    def per_object(keys: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.bincount(keys, weights, minlength=frames * (k + 1)).reshape(frames, k + 1)[:, :k]

    inter = per_object(g_key, lengths * (g_key == p_key))
    j = _j_from_counts(inter, per_object(g_key, lengths), per_object(p_key, lengths))

    # Boundary sets i*T + t: object i of the GT in frame t; K*T + i*T + t: the same in the prediction.
    bit_of_label = np.zeros(size, np.uint64)
    bit_of_label[ids] = np.left_shift(np.uint64(1), np.arange(k, dtype=np.uint64))
    g_set, g_y, g_x = _label_boundaries(gflat, g_cand, height, width, ids, bit_of_label)
    p_set, p_y, p_x = _label_boundaries(pflat, p_cand, height, width, ids, bit_of_label)
    n = k * frames
    bnd = _Boundaries(np.concatenate([g_set, p_set + n]), np.concatenate([g_y, p_y]), np.concatenate([g_x, p_x]),
                      2 * n)
    gt_hits, pred_hits = _match_counts(bnd, np.arange(n), np.arange(n) + n, boundary_tolerance(height, width, bound_th))
    f = _f_from_counts(bnd.count[n:], bnd.count[:n], pred_hits, gt_hits)
    return j, f.reshape(k, frames).T


def _mask_boundaries(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mask index, y, x)`` of the boundary pixels of a stack of ``(M, H, W)`` bool masks."""
    _, height, width = masks.shape
    cand = _stack_changes(masks.view(np.uint8).ravel(), width, height)
    row = cand // width
    mask = row // height
    return mask, row - mask * height, cand - row * width


def _popcounts(masks: np.ndarray) -> np.ndarray:
    """``(M, H*W/64)`` uint64 words holding each ``(H, W)`` bool mask's bits, zero padded."""
    packed = np.packbits(masks.reshape(masks.shape[0], masks.shape[1] * masks.shape[2]), axis=1)
    pad = (-packed.shape[1]) % 8
    return np.pad(packed, ((0, 0), (0, pad))).view(np.uint64)


def jf_pairs(gt_masks: np.ndarray, pred_masks: np.ndarray, void: np.ndarray | None = None,
             bound_th: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every (prediction, GT object) pair of one frame (unsupervised scoring).

    ``gt_masks``: ``(K, H, W)`` bool; ``pred_masks``: ``(N, H, W)`` bool, may overlap; ``void``:
    optional ``(H, W)`` bool, excluded from J and removed from both masks before their boundaries
    are taken. Returns ``(J, F)``, float64 arrays of shape ``(N, K)``.
    """
    _check_shapes(gt_masks, pred_masks, void, 3, stacked=True)
    gt_masks, pred_masks = np.asarray(gt_masks, dtype=bool), np.asarray(pred_masks, dtype=bool)
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

    # Boundary sets 0..K-1: GT masks; K..K+N-1: predicted masks. Problem n*K + k: (gt k, pred n).
    (g_set, g_y, g_x), (p_set, p_y, p_x) = _mask_boundaries(gt_masks), _mask_boundaries(pred_masks)
    bnd = _Boundaries(np.concatenate([g_set, p_set + kk]), np.concatenate([g_y, p_y]), np.concatenate([g_x, p_x]),
                      kk + nn)
    gts, preds = np.tile(np.arange(kk), nn), np.repeat(np.arange(nn) + kk, kk)
    gt_hits, pred_hits = _match_counts(bnd, gts, preds, boundary_tolerance(height, width, bound_th))
    f = _f_from_counts(bnd.count[preds], bnd.count[gts], pred_hits, gt_hits).reshape(nn, kk)
    return j, f


def statistics(per_frame: np.ndarray) -> dict[str, float]:
    """Mean, Recall and Decay of one object's per-frame scores, shape ``(T,)``, T >= 1.

    ``mean``: nanmean; ``recall``: fraction of frames scoring > 0.5 (NaN frames count as misses);
    ``decay``: nanmean of the first quarter minus nanmean of the last, the 4 bins being
    ``v[i_b : i_{b+1} + 1]`` with ``i = round(linspace(1, T, 5) + 1e-10) - 1`` (neighbouring bins
    share a frame). Identical to the reference's ``db_statistics`` for T <= 255. The reference
    casts the bin indices with ``astype(np.uint8)``: from 257 frames on they wrap modulo 256, and
    at exactly 256 frames (with NumPy >= 2) the end of the last bin, 255 + 1, wraps to 0; its
    last bin is then empty or wrong and its Decay NaN or wrong. Here the indices are exact for any T.
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
