"""rle_run_totals: the vectorised check of COCO compressed RLE strings, against pycocotools and a literal decoder."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from conftest import encode, encode_runs, rect_mask
from ovbench.submissions.rle import rle_run_totals

H, W = 30, 40
GOOD_COUNTS = encode(rect_mask(2, 3, 10, 8))


def runs_of(mask: np.ndarray) -> list[int]:
    """Column-major run lengths, background first (an independent RLE of ``mask``)."""
    flat = mask.flatten(order="F").astype(np.int64)
    changes = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    runs = np.diff(np.r_[0, changes]).tolist()
    return runs[:-1] if runs and sum(runs) > flat.size else runs


def decode_reference(s: str) -> tuple[int, bool]:
    """Pure-Python pycocotools rleFrString with the checker's rules: (total or -1, runs all >= 0)."""
    runs, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                return -1, False                       # ends inside a number
            c = ord(s[p]) - 48
            if not 0 <= c <= 0x3F or k > 11:
                return -1, False                       # bad character / a run beyond 2**60
            x |= (c & 0x1F) << 5 * k
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x -= 1 << 5 * k
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return sum(runs), all(r >= 0 for r in runs)


def random_masks(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = [np.zeros((1, 1)), np.ones((1, 1)), np.zeros((H, W)), np.ones((H, W)), np.zeros((480, 640)),
             np.ones((480, 640)), rect_mask(100, 50, 400, 300, (480, 640)), rect_mask(0, 0, 1, 1, (1, 5))]
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        kind = rng.integers(4)
        if kind == 0:
            m = rng.random((h, w)) < rng.choice([0.02, 0.5, 0.98])
        elif kind == 1:
            x0, x1 = sorted(rng.integers(0, w + 1, 2))
            y0, y1 = sorted(rng.integers(0, h + 1, 2))
            m = rect_mask(x0, y0, x1 - x0, y1 - y0, (h, w))
        elif kind == 2:
            m = np.zeros((h, w)) if rng.random() < 0.5 else np.ones((h, w))
        else:                                          # big masks: runs need 3-4 groups
            big = (int(rng.integers(200, 500)), int(rng.integers(200, 500)))
            m = rng.random(big) < 0.0005
        masks.append(m.astype(np.uint8))
    return masks


def test_rle_run_totals_round_trip_with_pycocotools():
    masks = random_masks()
    strings = [encode(m) for m in masks]
    assert all(s == encode_runs(runs_of(m)) for s, m in zip(strings[:50], masks[:50]))   # the helpers are right
    totals, ok = rle_run_totals(strings)
    assert totals.dtype == np.int64 and totals.shape == ok.shape == (len(masks),)
    np.testing.assert_array_equal(totals, [m.size for m in masks])
    assert ok.all()
    chunked = rle_run_totals(strings, chunk=3)
    np.testing.assert_array_equal(chunked[0], totals)
    np.testing.assert_array_equal(chunked[1], ok)
    # the decoded areas agree with pycocotools' own decoding
    areas = [int(mask_utils.area({"size": list(m.shape), "counts": s.encode()})) for m, s in zip(masks, strings)]
    assert areas == [int(m.sum()) for m in masks]


def test_rle_run_totals_rejects_mutated_strings():
    masks = [m for m in random_masks(1) if m.size > 1]
    strings = [encode(m) for m in masks]
    rng = np.random.default_rng(2)
    mutated = []
    for s in strings:
        last = ord(s[-1]) - 48
        p = int(rng.integers(len(s)))
        mutated += [s[:-1],                                       # a run lost (or a number cut short)
                    s[:-1] + chr(48 + (last | 0x20)),             # last number left open
                    s[:p] + rng.choice(list("/ pz~{")) + s[p + 1:],   # a character outside '0'..'o'
                    s + encode_runs([0, 0, 0, 7])[-1]]            # one more run (delta +7 of a positive run)
    totals, ok = rle_run_totals(mutated)
    expected = np.repeat([m.size for m in masks], 4)
    valid = (totals == expected) & ok
    assert not valid.any(), [mutated[i] for i in np.flatnonzero(valid)][:3]
    chunked = rle_run_totals(mutated, chunk=3)
    np.testing.assert_array_equal(chunked[0], totals)
    np.testing.assert_array_equal(chunked[1], ok)


def test_rle_run_totals_matches_a_reference_decoder_on_random_strings():
    rng = np.random.default_rng(3)
    alphabet = [chr(c) for c in range(48, 112)] + list("/ pz")
    strings = ["".join(rng.choice(alphabet, int(rng.integers(1, 25)))) for _ in range(2000)]
    strings += [encode_runs(list(rng.integers(-5, 3000, int(rng.integers(1, 12))))) for _ in range(500)]
    totals, ok = rle_run_totals(strings)
    for s, total, good in zip(strings, totals, ok):
        ref_total, ref_ok = decode_reference(s)
        if abs(ref_total) < 2 ** 50:                  # beyond that the checker sums in float64: only validity counts
            assert (total, bool(good)) == (ref_total, ref_ok), s
        else:
            assert total != 0 and bool(good) == ref_ok, s
    assert (totals == -1).sum() > 100 and (~ok & (totals >= 0)).sum() > 50     # both kinds of failure exercised
    chunked = rle_run_totals(strings, chunk=3)
    np.testing.assert_array_equal(chunked[0], totals)
    np.testing.assert_array_equal(chunked[1], ok)


def test_rle_run_totals_of_nothing():
    totals, ok = rle_run_totals([])
    assert totals.shape == ok.shape == (0,)


def test_rle_run_totals_empty_strings_do_not_depend_on_chunking():
    strings = [GOOD_COUNTS, ""]
    whole = rle_run_totals(strings)
    assert whole[0].tolist() == [H * W, 0]
    one_each = rle_run_totals(strings, chunk=1)
    np.testing.assert_array_equal(one_each[0], whole[0])


def test_rle_run_totals_non_latin1_character_gives_minus_one():
    totals, ok = rle_run_totals([GOOD_COUNTS, "k4\u20ac"])
    assert totals.tolist() == [H * W, -1] and ok.tolist() == [True, False]


