"""Checking COCO compressed RLE strings without decoding masks.

A COCO compressed RLE (``{"size": [h, w], "counts": "<ascii>"}``) stores alternating run
lengths (background first) of a column-major ``h x w`` mask. Each run is a signed integer in
5-bit groups, one character (``chr(48 + group)``) per group, bit ``0x20`` meaning "more groups
follow" and bit ``0x10`` of the last group the sign; from the fourth run on, a run is stored as
its difference to the run two places before it. A valid string decodes to non-negative runs
summing to ``h * w``. pycocotools does not check this (a malformed string can read or write out
of bounds), so submissions are checked here first, for all masks at once with NumPy.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils

_OFFSET = 48
_MORE = 0x20
_SIGN = 0x10
_PAYLOAD = 0x1F
_MAX_GROUP = 11


def rle_run_totals(counts: Sequence[str], chunk: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """Decode every string's runs; return ``(total pixels, all runs non-negative)`` per string.

    Strings with characters outside ``'0'..'o'`` (48..111) or ending in the middle of a number
    get total ``-1``. Shapes: both outputs ``(len(counts),)``; totals are int64. Work is done
    ``chunk`` strings at a time to bound memory.
    """
    parts = [_chunk_totals(counts[i:i + chunk]) for i in range(0, len(counts), chunk)]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    return np.concatenate([t for t, _ in parts]), np.concatenate([o for _, o in parts])


def _chunk_totals(counts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    n = len(counts)
    totals = np.full(n, -1, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    lengths = np.fromiter((len(c) for c in counts), dtype=np.int64, count=n)
    if not lengths.any():                          # only empty strings: no runs at all
        return np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    # non-ASCII characters are never valid; "replace" keeps one byte per character
    raw = np.frombuffer("".join(counts).encode("ascii", errors="replace"), dtype=np.uint8).astype(np.int64)
    raw -= _OFFSET
    owner = np.repeat(np.arange(n), lengths)
    bad_char = ~np.fromiter((c.isascii() for c in counts), dtype=bool, count=n)
    bad_char[owner[(raw < 0) | (raw > 0x3F)]] = True
    raw = np.clip(raw, 0, 0x3F)
    ends = (raw & _MORE) == 0
    string_ends = np.cumsum(lengths) - 1
    unterminated = lengths > 0
    unterminated[lengths > 0] = ~ends[string_ends[lengths > 0]]
    ends[string_ends[lengths > 0]] = True          # close every string's last number, flagged above
    number_id = np.cumsum(ends) - ends             # index of the number each character belongs to
    starts = np.flatnonzero(np.r_[True, ends[:-1]])
    position = np.arange(raw.size) - starts[number_id]
    if position.size and position.max() > _MAX_GROUP:   # a run beyond 2**60 pixels: malformed
        bad_char[owner[position > _MAX_GROUP]] = True
        position = np.minimum(position, _MAX_GROUP)
    values = np.add.reduceat((raw & _PAYLOAD) << (5 * position), starts) if raw.size else np.zeros(0, np.int64)
    last = raw[ends]
    negative = (last & _SIGN) != 0
    widths = 5 * (position[ends] + 1)
    values = np.where(negative, values - (np.int64(1) << np.minimum(widths, 62)), values)
    number_owner = owner[starts]
    runs = _undo_delta(values, number_owner, n)
    run_ok = np.ones(n, dtype=bool)
    run_ok[number_owner[runs < 0]] = False
    sums = np.bincount(number_owner, weights=runs.astype(np.float64), minlength=n)
    valid = ~bad_char & ~unterminated
    totals[valid] = np.rint(sums[valid]).astype(np.int64)
    ok[valid] = run_ok[valid]
    return totals, ok


def _undo_delta(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Runs from stored values: run ``i >= 3`` is stored as ``run[i] - run[i - 2]``.

    So per string, even-indexed runs from index 2 on are a cumulative sum of the stored values
    starting at index 2, and odd-indexed runs a cumulative sum starting at index 1.
    """
    first = np.r_[0, np.flatnonzero(np.diff(owner)) + 1] if values.size else np.zeros(0, np.int64)
    index = np.arange(values.size) - np.repeat(first, np.diff(np.r_[first, values.size]))
    runs = values.copy()
    for parity, begin in ((1, 1), (0, 2)):
        chain = (index % 2 == parity) & (index >= begin)
        v = values[chain]
        if not v.size:
            continue
        o = owner[chain]
        c = np.cumsum(v)
        group_start = np.r_[True, o[1:] != o[:-1]]
        offset = np.repeat(c[group_start] - v[group_start], np.diff(np.r_[np.flatnonzero(group_start), v.size]))
        runs[chain] = c - offset
    return runs


#: pycocotools 2.0.11's ``mask.area`` sizes a scratch array as uint8 and, under NumPy 2, raises
#: OverflowError for more than 255 masks per call; :func:`rle_areas` calls it this many at a time.
AREA_CHUNK = 255


def rle_areas(masks: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Pixel count of each compressed RLE dict, shape ``(len(masks),)`` uint32."""
    parts = [mask_utils.area(list(masks[i:i + AREA_CHUNK])) for i in range(0, len(masks), AREA_CHUNK)]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint32)
