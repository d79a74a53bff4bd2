"""Video consistency VC_n (VSPW) and its correctness-aware variant VCc_n, on a 0-100 scale.

VSPW's ``VC_perclip.py``: for a video of ``T > n`` frames and each window start ``i`` in
``0 .. T-n-1`` (``range(T - n)``: the last full window, starting at ``T - n``, is not used), A =
pixels whose ground-truth label is the same in the window's ``n`` frames, B = pixels whose
predicted label is; ``VC = |A & B| / |A|``. ``mVC_n`` is the mean over all windows of all videos
(a window with empty A is skipped, as VSPW's ``nanmean``). Every pixel counts, the ignore label
included, as in VSPW. Videos of ``n`` frames or fewer have no window.

``VCc`` also needs the constant prediction to be right (``pred == gt``) and leaves out pixels
whose ground truth is not a class (the ignore label): a model that predicts one constant label
everywhere scores VC 1 but VCc only where that label is correct. ``_base`` / ``_novel`` restrict
A to pixels whose (constant) ground truth is in that partition.

Counts are streamed over a video's frames from last to first, keeping for every pixel the length
of the run of equal labels that starts at the current frame: window ``i`` has A = ``run_gt[i] >= n``.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

#: Pixel groups, by the ground-truth label: base class, novel class, anything else (ignore).
GROUPS = ("base", "novel", "other")
#: Count kinds per window: |A|, |A & B|, |A & B & correct|.
KINDS = ("constant_gt", "constant_both", "constant_both_correct")


def group_lookup(num_labels: int, base_ids: Sequence[int], novel_ids: Sequence[int]) -> np.ndarray:
    """``lut[label]`` = index into :data:`GROUPS` for every label value ``0..num_labels-1``."""
    lut = np.full(num_labels, GROUPS.index("other"), dtype=np.int64)
    lut[np.asarray(base_ids, dtype=np.int64)] = GROUPS.index("base")
    lut[np.asarray(novel_ids, dtype=np.int64)] = GROUPS.index("novel")
    return lut


def window_counts(frames_backwards: Iterable[tuple[np.ndarray, np.ndarray]], num_frames: int,
                  windows: Sequence[int], groups: np.ndarray) -> dict[int, np.ndarray]:
    """Per-window pixel counts of one video.

    ``frames_backwards`` yields ``(gt, pred)`` label maps ``(H, W)`` for frames ``T-1, ..., 0``;
    ``groups`` is :func:`group_lookup` over every possible ground-truth value. Returns, for each
    ``n`` in ``windows``, an int64 array ``(windows, len(KINDS), len(GROUPS))`` with one row per
    window start ``0 .. T-n-1`` (zero rows when ``T <= n``).
    """
    longest = max(windows)
    out = {n: np.zeros((max(num_frames - n, 0), len(KINDS), len(GROUPS)), dtype=np.int64) for n in windows}
    run_gt = run_pred = gt_next = pred_next = None
    for t, (gt, pred) in zip(range(num_frames - 1, -1, -1), frames_backwards):
        if run_gt is None:
            run_gt = np.ones(gt.shape, dtype=np.int32)
            run_pred = np.ones(gt.shape, dtype=np.int32)
        else:
            run_gt = np.where(gt == gt_next, np.minimum(run_gt + 1, longest), 1)
            run_pred = np.where(pred == pred_next, np.minimum(run_pred + 1, longest), 1)
        gt_next, pred_next = gt, pred
        active = [n for n in windows if t < num_frames - n]
        if not active:
            continue
        group = groups[gt]
        correct = pred == gt
        for n in active:
            a = run_gt >= n
            ab = a & (run_pred >= n)
            for k, mask in enumerate((a, ab, ab & correct)):
                out[n][t, k] = np.bincount(group[mask], minlength=len(GROUPS))
    return out


def _mean_ratio(num: np.ndarray, den: np.ndarray) -> float | None:
    """Mean over windows of ``num / den``, skipping windows with ``den == 0``; 0-100."""
    valid = den > 0
    return float((num[valid] / den[valid]).mean() * 100) if valid.any() else None


def consistency_metrics(counts: Mapping[int, Sequence[np.ndarray]]) -> dict[str, float | None]:
    """``mVC{n}``, ``mVCc{n}`` and their ``_base`` / ``_novel`` forms from every video's window counts."""
    base, novel = GROUPS.index("base"), GROUPS.index("novel")
    out: dict[str, float | None] = {}
    for n, per_video in sorted(counts.items()):
        c = np.concatenate(list(per_video)) if per_video else np.zeros((0, len(KINDS), len(GROUPS)), np.int64)
        a, ab, abc = c[:, 0], c[:, 1], c[:, 2]
        labelled = [base, novel]
        out[f"mVC{n}"] = _mean_ratio(ab.sum(axis=1), a.sum(axis=1))
        out[f"mVC{n}_base"] = _mean_ratio(ab[:, base], a[:, base])
        out[f"mVC{n}_novel"] = _mean_ratio(ab[:, novel], a[:, novel])
        out[f"mVCc{n}"] = _mean_ratio(abc[:, labelled].sum(axis=1), a[:, labelled].sum(axis=1))
        out[f"mVCc{n}_base"] = _mean_ratio(abc[:, base], a[:, base])
        out[f"mVCc{n}_novel"] = _mean_ratio(abc[:, novel], a[:, novel])
        out[f"num_windows{n}"] = int(c.shape[0])
    return out
