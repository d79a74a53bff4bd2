"""DAVIS 2017 J&F: hand-computed cases, the reference's own numbers, statistics, matching,
folder evaluation with its validation, and the ``evaluate-davis`` command."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from PIL import Image

from ovbench.cli import main
from ovbench.errors import ValidationError
from ovbench.evaluation.davis import evaluate_davis
from ovbench.metrics.davis import (boundary_tolerance, jf_label_map_stack, jf_label_maps, jf_pairs, match_unsupervised,
                                   statistics)
from ovbench.metrics.davis_direct import f_measure, jaccard, jf_label_maps_direct

# ---------------------------------------------------------------------------------------------
# Deterministic fixtures. The reference numbers below were produced by running these functions,
# copied verbatim, against the reference code.
# ---------------------------------------------------------------------------------------------

def _ellipses(rng, h, w, labels, scale=0.5, spill=4):
    """Label map with one filled ellipse per label (later ones on top); centres lie up to h/spill,
    w/spill outside the image (negative spill: that far inside)."""
    yy, xx = np.mgrid[:h, :w]
    lab = np.zeros((h, w), np.uint8)
    for label in labels:
        cy, cx = int(rng.integers(-h // spill, h + h // spill)), int(rng.integers(-w // spill, w + w // spill))
        ry, rx = int(rng.integers(1, max(2, int(h * scale)))), int(rng.integers(1, max(2, int(w * scale))))
        lab[((yy - cy) * rx) ** 2 + ((xx - cx) * ry) ** 2 <= (ry * rx) ** 2] = label
    return lab


def _noisy(rng, lab, p, labels):
    out = lab.copy()
    flip = rng.random(lab.shape) < p
    out[flip] = rng.choice(np.asarray(labels, np.uint8), int(flip.sum()))
    return out


def _frame_cases():
    """(name, gt, pred, void, bound_th, ids): one frame of label maps per case, all deterministic."""
    rng = np.random.default_rng(2017)
    cases = []
    gt = _ellipses(rng, 480, 854, [1, 2, 3], 0.3, spill=-5)
    pred = _noisy(rng, np.roll(gt, (3, -4), axis=(0, 1)), 0.002, [0, 1, 2, 3])
    pred[100:200, 300:420] = 2
    cases.append(("davis480", gt, pred, None, 0.008, [1, 2, 3]))
    gt_void = gt.copy()
    gt_void[rng.random(gt.shape) < 0.01] = 255
    gt_void[200:260, 0:854] = 255
    cases.append(("davis480_void", gt_void, pred, gt_void == 255, 0.008, [1, 2, 3]))
    border = _ellipses(rng, 64, 96, [1, 2, 3], 0.7)
    border[:, -1] = 1
    border[-1, :] = 2
    border[0, 0], border[-1, -1], border[-1, 0], border[0, -1] = 4, 5, 6, 7
    border_pred = np.roll(border, (1, 2), axis=(0, 1))
    border_pred[-1, -1], border_pred[0, 0] = 4, 5
    cases.append(("border", border, border_pred, None, 0.008, [1, 2, 3, 4, 5, 6, 7]))
    for h, w in [(5, 7), (1, 9), (9, 1), (2, 2), (1, 1), (3, 200)]:
        cases.append((f"tiny{h}x{w}", rng.integers(0, 3, (h, w)).astype(np.uint8),
                      rng.integers(0, 3, (h, w)).astype(np.uint8), None, 0.008, [1, 2]))
    empty_gt = _ellipses(rng, 40, 60, [1, 2], 0.5)
    empty_pred = np.where(empty_gt == 2, 0, empty_gt).astype(np.uint8)
    empty_pred[5:9, 5:9] = 4
    cases.append(("empty", empty_gt, empty_pred, None, 0.008, [1, 2, 3, 4]))
    th_gt = _ellipses(rng, 100, 150, [1, 2], 0.4, spill=-5)
    th_pred = _noisy(rng, np.roll(th_gt, (2, 5), axis=(0, 1)), 0.01, [0, 1, 2])
    cases.append(("radius_frac", th_gt, th_pred, None, 0.02, [1, 2]))
    cases.append(("radius_px", th_gt, th_pred, None, 3, [1, 2]))
    heavy = _ellipses(rng, 120, 90, [1, 2, 3], 0.5)
    heavy_void = rng.random(heavy.shape) < 0.3
    cases.append(("void_heavy", heavy, _noisy(rng, heavy, 0.05, [0, 1, 2, 3]), heavy_void, 0.008, [1, 2, 3]))
    return cases


def _pair_cases():
    """(name, gt masks (K, H, W), pred masks (N, H, W), void, bound_th): overlapping predictions."""
    rng = np.random.default_rng(7)
    cases = []
    for name, (h, w), void_p in [("pairs480", (480, 854), 0.0), ("pairs_void", (37, 53), 0.2)]:
        gt_lab = _ellipses(rng, h, w, [1, 2, 3], 0.3, spill=-5)
        gt = np.stack([gt_lab == k for k in (1, 2, 3)])
        preds = [np.roll(gt[0], (2, 3), axis=(0, 1)), _ellipses(rng, h, w, [1], 0.4) == 1,
                 np.zeros((h, w), bool), np.ones((h, w), bool), gt[1] | gt[2]]
        void = rng.random((h, w)) < void_p if void_p else None
        cases.append((name, gt, np.stack(preds), void, 0.008))
    return cases


def _davis_folder():
    """A tiny DAVIS dataset: {sequence: (gt label maps, semi-supervised pred, unsupervised pred)}.

    GT 255 marks void; object ids 1..K are present in the first frame; proposals are 1..N.
    """
    rng = np.random.default_rng(42)
    data = {}
    for name, frames, (h, w), objects, proposals in [("alpha", 6, (48, 64), 2, 3), ("beta", 5, (40, 56), 3, 2),
                                                     ("gamma", 4, (32, 48), 1, 1)]:
        gts, semi, unsup = [], [], []
        first = None
        for t in range(frames):
            gt = _ellipses(rng, h, w, list(range(1, objects + 1)), 0.4)
            if t == 0:
                for k in range(1, objects + 1):  # every object in the first frame
                    gt[2 * k:2 * k + 3, 2 * k:2 * k + 3] = k
                first = gt
            elif name == "gamma" and t == 2:
                gt[:] = 0  # the object leaves the scene
            gt[rng.random((h, w)) < 0.02] = 255
            gts.append(gt)
            pred = np.roll(np.where(gt == 255, 0, gt), (1, t % 3), axis=(0, 1)).astype(np.uint8)
            semi.append(_noisy(rng, pred, 0.03, list(range(objects + 1))))
            unsup.append(_noisy(rng, np.roll(first if t % 2 else pred, (0, 2), axis=(0, 1)) % (proposals + 1),
                                0.02, list(range(proposals + 1))))
        data[name] = (gts, semi, unsup)
    return data


def _series(t):
    return (np.cos(np.arange(t) / 17.0) + 1) / 2


# ---------------------------------------------------------------------------------------------
# Numbers computed by the reference itself: github.com/davisvideochallenge/davis2017-evaluation at
# commit ac7c43fca936f9722837b7fbd337d284ba37004b, its davis2017/ package imported unchanged, in a
# separate virtualenv (numpy 2.4.6, scikit-image 0.26.0, opencv-python-headless 5.0.0, scipy 1.17.1):
#   REFERENCE_FRAMES[name] = ([db_eval_iou(gt == k, pred == k, void) for k in ids],
#                             [db_eval_boundary(gt == k, pred == k, void, bound_th=th) for k in ids])
#       for (name, gt, pred, void, th, ids) in _frame_cases()
#   REFERENCE_PAIRS[name] = ([[db_eval_iou(g, p, void) for g in gt] for p in pred], same with db_eval_boundary)
#       for (name, gt, pred, void, th) in _pair_cases()
#   REFERENCE_STATS[T] = utils.db_statistics(_series(T))
#   REFERENCE_EVALUATION[task]: _davis_folder() written as a DAVIS root (JPEGImages/480p, Annotations/480p and
#       Annotations_unsupervised/480p both holding the GT, ImageSets/2017/val.txt listing alpha, beta, gamma),
#       predictions as palette PNGs, DAVISEvaluation(root, task, "val").evaluate(results), then the global
#       table and the (row name, J-Mean, F-Mean) rows exactly as evaluation_method.py builds them.
# ---------------------------------------------------------------------------------------------

REFERENCE_FRAMES = {'davis480': ([0.6028334147532975, 0.7453605375857386, 0.9438542957947935],
                                 [0.36985236985236986, 0.5949441504997061, 0.6700990410312844]),
                    'davis480_void': ([0.0, 0.678468590910138, 0.9444979764887261],
                                      [0.0, 0.7582729278285535, 0.9011879804332634]),
                    'border': ([0.0, 0.5438871473354232, 0.0136986301369863, 0.0, 0.0, 0.0, 0.0],
                               [0.0, 0.3828686975834521, 0.9538624712745272, 0.25, 0.0, 0.0, 0.0]),
                    'tiny5x7': ([0.08333333333333333, 0.18181818181818182],
                                [0.9591659426585578, 0.9818181818181818]),
                    'tiny1x9': ([0.0, 0.0], [0.33333333333333337, 0.5714285714285715]),
                    'tiny9x1': ([0.5, 0.0], [0.8571428571428571, 0.3333333333333333]),
                    'tiny2x2': ([0.25, 0.0], [0.0, 0.0]),
                    'tiny1x1': ([0.0, 0.0], [1.0, 1.0]),
                    'tiny3x200': ([0.21779141104294478, 0.17647058823529413],
                                  [0.9975728155339806, 0.9923857868020305]),
                    'empty': ([1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0]),
                    'radius_frac': ([0.7684927267099969, 0.6009852216748769],
                                    [0.3116616245219476, 0.30534351145038163]),
                    'radius_px': ([0.7684927267099969, 0.6009852216748769],
                                  [0.2122927618277396, 0.19385515727871253]),
                    'void_heavy': ([0.8523206751054853, 0.9376880103137086, 0.19230769230769232],
                                   [0.8011331444759208, 0.9575454869782376, 0.1336898395721925])}
REFERENCE_PAIRS = {'pairs480': ([[0.9576888661638757, 0.002835493134486836, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0],
                                 [0.14944379391100704, 0.053310402029664326, 0.06994779469164715],
                                 [0.0, 0.4325099948541345, 0.5674900051458655]],
                                [[1.0, 0.30418579835736925, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0],
                                 [0.20723879389395328, 0.5746388443017656, 0.7475317348377998]]),
                   'pairs_void': ([[0.15, 0.0, 0.0], [0.03543307086614173, 0.0, 0.21671826625386997],
                                   [0.0, 1.0, 0.0], [0.02225047679593134, 0.0, 0.1048951048951049],
                                   [0.0, 0.0, 1.0]],
                                  [[0.5811138014527845, 0.0, 0.0], [0.17185013742224794, 0.0, 0.44603521795806544],
                                   [0.0, 1.0, 0.0], [0.07858309355315343, 0.0, 0.2903912603399532],
                                   [0.0, 0.0, 1.0]])}
REFERENCE_STATS = {1: (1.0, 1.0, 0.0),
                   2: (0.9995675987531911, 1.0, 0.0008648024936176446),
                   3: (0.9985596596884413, 1.0, 0.0030238171942498226),
                   7: (0.9888351171636528, 1.0, 0.02470505136281076),
                   100: (0.46704200885512603, 0.46, 0.16958413911216097),
                   255: (0.5233951948426667, 0.5254901960784314, -0.29478156672722755),
                   256: (0.5218200419080101, 0.5234375, math.nan),
                   300: (0.47410760252183837, 0.4666666666666667, math.nan),
                   600: (0.4912112889355899, 0.49, math.nan)}
REFERENCE_EVALUATION = {'semi-supervised': ([0.3002225495708756, 0.3235405103791228, 0.38888888888888884,
                                             -0.09380034878628037, 0.2769045887626284, 0.2638888888888889,
                                             -0.06761743317836542],
                                            [('alpha_1', 0.44010774218154086, 0.462240665705188),
                                             ('alpha_2', 0.45259462759462754, 0.3266434951968299),
                                             ('beta_1', 0.4226465077211346, 0.3029419360090925),
                                             ('beta_2', 0.2318104906937394, 0.1235888294711824),
                                             ('beta_3', 0.2297979797979798, 0.17528089887640452),
                                             ('gamma_1', 0.16428571428571428, 0.27073170731707313)]),
                        'unsupervised': ([0.2129941023429479, 0.18792901929583694, 0.16111111111111112,
                                          -0.04231262704409186, 0.2380591853900589, 0.15555555555555556,
                                          -0.0411639550474932],
                                         [('alpha_1', 0.2464454029237394, 0.28380505708182957),
                                          ('alpha_2', 0.055001671769964455, 0.15659565728300118),
                                          ('beta_1', 0.1644317139087381, 0.2130105804698117),
                                          ('beta_2', 0.013807245386192754, 0.058402713536848595),
                                          ('beta_3', 0.6, 0.6),
                                          ('gamma_1', 0.04788808178638687, 0.11654110396886243)])}


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def _stripe(h, w, x0, x1):
    """Label map with object 1 on columns x0..x1-1 of every row."""
    lab = np.zeros((h, w), np.uint8)
    lab[:, x0:x1] = 1
    return lab


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr.astype(np.uint8))
    im.putpalette([v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)])
    im.save(path)


def _write_davis(root, task):
    """_davis_folder() as <root>/gt and <root>/pred for ``task``; returns both folders."""
    for seq, (gts, semi, unsup) in _davis_folder().items():
        for t, (gt, s, u) in enumerate(zip(gts, semi, unsup)):
            _save(root / "gt" / seq / f"{t:05d}.png", gt)
            _save(root / "pred" / seq / f"{t:05d}.png", s if task == "semi-supervised" else u)
    return root / "gt", root / "pred"


# ---------------------------------------------------------------------------------------------
# Tolerance and hand-computed J / F
# ---------------------------------------------------------------------------------------------

def test_boundary_tolerance_values():
    assert boundary_tolerance(480, 854) == 8  # 0.008 * 979.6 = 7.84
    assert boundary_tolerance(300, 400) == 4  # diagonal exactly 500: 4.0, no rounding up
    assert boundary_tolerance(600, 800) == 8 and boundary_tolerance(750, 1000) == 10
    assert boundary_tolerance(300, 400, 0.01) == 5
    assert boundary_tolerance(3, 4) == 1 and boundary_tolerance(1, 1) == 1
    assert boundary_tolerance(480, 854, 3) == 3 and boundary_tolerance(10, 10, 1) == 1
    for h in range(1, 700, 37):  # the reference's expression
        for w in range(1, 1300, 53):
            assert boundary_tolerance(h, w) == int(np.ceil(0.008 * np.linalg.norm((h, w))))


@pytest.mark.parametrize("bound_th", [0.0, -0.5, 2.5])
def test_boundary_tolerance_rejects(bound_th):
    with pytest.raises(ValueError):
        boundary_tolerance(480, 854, bound_th)


@pytest.mark.parametrize("bound_th, expected_f", [(3, 1.0), (2, 0.0), (0.025, 1.0), (0.0178, 0.0)])
def test_stripe_shifted_by_three_pixels(bound_th, expected_f):
    # GT boundary: columns 19 and 39; prediction (shifted by 3): columns 22 and 42. Every boundary
    # pixel is 3 px from the other boundary, so F is 1 at radius >= 3 and 0 below.
    # 0.025 * |(50, 100)| = 2.80 -> radius 3; 0.0178 * 111.8 = 1.99 -> radius 2.
    j, f = jf_label_maps(_stripe(50, 100, 20, 40), _stripe(50, 100, 23, 43), [1], bound_th=bound_th)
    assert j[0] == pytest.approx(17 / 23, abs=1e-15)
    assert f[0] == expected_f


@pytest.mark.parametrize("radius, expected_f", [(2, 0.0), (3, 0.25), (4, 0.75), (5, 1.0)])
def test_single_pixels_diagonal_uses_a_disk(radius, expected_f):
    # A lone pixel's boundary is the 2x2 block ending at it: GT {9,10}x{9,10}, prediction
    # {12,13}x{12,13}. Squared distances between the blocks: 8 for one pair, 13 for two, 18 for one
    # more, so 1/4, 3/4 and 4/4 of each side match at r = 3, 4, 5 (a square window would give 1 at r = 3).
    gt, pred = np.zeros((30, 30), np.uint8), np.zeros((30, 30), np.uint8)
    gt[10, 10], pred[13, 13] = 1, 1
    j, f = jf_label_maps(gt, pred, [1], bound_th=radius)
    assert j[0] == 0.0 and f[0] == pytest.approx(expected_f, abs=1e-15)


def test_empty_masks():
    gt, pred = np.zeros((20, 30), np.uint8), np.zeros((20, 30), np.uint8)
    gt[5:10, 5:10] = 1    # object 1: predicted empty
    pred[5:10, 15:20] = 2  # object 2: empty in the GT; object 3: empty in both
    j, f = jf_label_maps(gt, pred, [1, 2, 3])
    assert j.tolist() == [0.0, 0.0, 1.0] and f.tolist() == [0.0, 0.0, 1.0]
    jp, fp = jf_pairs(np.stack([gt == 1, gt == 3]), np.stack([pred == 2, pred == 3]))
    assert jp.tolist() == [[0.0, 0.0], [0.0, 1.0]] and fp.tolist() == [[0.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize("radius, expected_f", [(4, 1.0), (3, 0.5)])
def test_void_pixels(radius, expected_f):
    # GT columns 20..39, prediction 24..43, columns 40..43 void: J = 16 / 20 over non-void pixels.
    # Without the void part the prediction's boundary is at columns 23 and 39, the GT's at 19 and 39.
    gt, pred = _stripe(50, 100, 20, 40), _stripe(50, 100, 24, 44)
    void = _stripe(50, 100, 40, 44).astype(bool)
    j, f = jf_label_maps(gt, pred, [1], void, bound_th=radius)
    assert j[0] == pytest.approx(0.8, abs=1e-15) and f[0] == expected_f
    jp, fp = jf_pairs(gt[None] == 1, pred[None] == 1, void, bound_th=radius)
    assert jp[0, 0] == j[0] and fp[0, 0] == f[0]
    assert jf_label_maps(gt, pred, [1], bound_th=radius)[0][0] == pytest.approx(16 / 24)


def test_label_maps_reject_bad_input():
    gt = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="distinct and positive"):
        jf_label_maps(gt, gt, [1, 1])
    with pytest.raises(ValueError, match="distinct and positive"):
        jf_label_maps(gt, gt, [0])
    with pytest.raises(ValueError, match="shapes differ"):
        jf_label_maps(gt, np.zeros((4, 5), np.uint8), [1])
    with pytest.raises(ValueError, match="negative"):
        jf_label_maps(np.full((4, 4), -1, np.int32), gt.astype(np.int32), [1])


# ---------------------------------------------------------------------------------------------
# Exactness against the reference and the literal implementation
# ---------------------------------------------------------------------------------------------

def test_fixtures_are_the_ones_the_reference_scored():
    # The fixtures come from NumPy's PCG64 streams; if those ever change, the constants above no
    # longer describe these arrays and must be regenerated as described.
    digest = hashlib.sha256()
    for case in _frame_cases() + _pair_cases():
        for arr in case[1:4]:
            digest.update(b"" if arr is None else arr.tobytes())
    for gts, semi, unsup in _davis_folder().values():
        for arr in gts + semi + unsup:
            digest.update(arr.tobytes())
    assert digest.hexdigest() == "85c436b4747c0d1aafea9d9cc6f1015dc73bbe73acf29cae8fc5e0de658f98f3"


@pytest.mark.parametrize("case", _frame_cases(), ids=lambda c: c[0])
def test_label_maps_equal_reference(case):
    name, gt, pred, void, bound_th, ids = case
    j, f = jf_label_maps(gt, pred, ids, void, bound_th)
    ref_j, ref_f = REFERENCE_FRAMES[name]
    np.testing.assert_allclose(j, ref_j, rtol=0, atol=1e-9)
    np.testing.assert_allclose(f, ref_f, rtol=0, atol=1e-9)


@pytest.mark.parametrize("case", _pair_cases(), ids=lambda c: c[0])
def test_pairs_equal_reference(case):
    name, gt, pred, void, bound_th = case
    j, f = jf_pairs(gt, pred, void, bound_th)
    ref_j, ref_f = REFERENCE_PAIRS[name]
    np.testing.assert_allclose(j, ref_j, rtol=0, atol=1e-9)
    np.testing.assert_allclose(f, ref_f, rtol=0, atol=1e-9)


def test_direct_implementation_equals_reference():
    for name, gt, pred, void, bound_th, ids in _frame_cases():
        j, f = jf_label_maps_direct(gt, pred, ids, void, bound_th)
        np.testing.assert_allclose(j, REFERENCE_FRAMES[name][0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(f, REFERENCE_FRAMES[name][1], rtol=0, atol=1e-9)


def test_fast_equals_direct_on_random_frames():
    rng = np.random.default_rng(3)
    for trial in range(120):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        if trial % 2:
            gt, pred = (rng.integers(0, 4, (h, w)).astype(np.uint8) for _ in range(2))
        else:
            gt, pred = (_ellipses(rng, h, w, [1, 2, 3]) for _ in range(2))
        void = rng.random((h, w)) < 0.1 if trial % 3 == 0 else None
        bound_th = [0.008, 0.05, 2, 4][trial % 4]
        j, f = jf_label_maps(gt, pred, [1, 2, 3], void, bound_th)
        ref_j, ref_f = jf_label_maps_direct(gt, pred, [1, 2, 3], void, bound_th)
        assert np.array_equal(j, ref_j) and np.array_equal(f, ref_f), (trial, h, w)
        masks = np.stack([pred == 1, pred == 2, gt == 3, rng.random((h, w)) < 0.5])
        jp, fp = jf_pairs(np.stack([gt == k for k in (1, 2, 3)]), masks, void, bound_th)
        for n, p in enumerate(masks):
            for k in (1, 2, 3):
                assert jp[n, k - 1] == jaccard(gt == k, p, void)
                assert fp[n, k - 1] == f_measure(gt == k, p, void, bound_th)


def test_stack_equals_single_frames():
    rng = np.random.default_rng(8)
    for h, w in [(1, 7), (6, 1), (1, 1), (9, 13), (31, 20)]:  # frame seams must not leak
        gt, pred = (rng.integers(0, 3, (5, h, w)).astype(np.uint8) for _ in range(2))
        gt[:, -1, :] = 1  # objects on the last row of every frame, above the next frame's first row
        void = rng.random((5, h, w)) < 0.2
        j, f = jf_label_map_stack(gt, pred, [1, 2], void)
        for t in range(5):
            ref_j, ref_f = jf_label_maps_direct(gt[t], pred[t], [1, 2], void[t])
            assert np.array_equal(j[t], ref_j) and np.array_equal(f[t], ref_f), (h, w, t)


def test_many_objects_and_wide_labels():
    rng = np.random.default_rng(11)
    gt = rng.integers(0, 90, (40, 50)).astype(np.uint16) * 7  # 89 objects, ids up to 623
    pred = np.where(rng.random(gt.shape) < 0.7, gt, 7).astype(np.uint16)
    ids = sorted(set(np.unique(gt).tolist()) - {0})
    j, f = jf_label_maps(gt, pred, ids)
    ref_j, ref_f = jf_label_maps_direct(gt, pred, ids)
    assert len(ids) > 64 and np.array_equal(j, ref_j) and np.array_equal(f, ref_f)


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [1, 2, 3, 7, 100, 255])
def test_statistics_equal_reference(frames):
    stats = statistics(_series(frames))
    ref_mean, ref_recall, ref_decay = REFERENCE_STATS[frames]
    assert stats["mean"] == pytest.approx(ref_mean, abs=1e-9)
    assert stats["recall"] == pytest.approx(ref_recall, abs=1e-9)
    assert stats["decay"] == pytest.approx(ref_decay, abs=1e-9)


@pytest.mark.parametrize("frames, bins", [(256, [0, 64, 128, 191, 255]), (300, [0, 75, 150, 224, 299]),
                                          (600, [0, 150, 300, 449, 599])])
def test_statistics_long_videos(frames, bins):
    values = _series(frames)
    first, last = values[bins[0]:bins[1] + 1], values[bins[3]:bins[4] + 1]
    assert statistics(values)["decay"] == pytest.approx(first.mean() - last.mean(), abs=1e-12)
    assert statistics(values)["mean"] == pytest.approx(REFERENCE_STATS[frames][0], abs=1e-12)
    # The reference's uint8 bin indices wrap (255 + 1 -> 0, 299 -> 43): its last bin is empty, its Decay NaN.
    wrapped = np.array(bins).astype(np.uint8)
    with np.errstate(over="ignore"):
        assert values[wrapped[3]:wrapped[4] + np.uint8(1)].size == 0
    assert math.isnan(REFERENCE_STATS[frames][2])


def test_statistics_recall_is_strict_and_counts_nan_frames_as_misses():
    stats = statistics(np.array([0.9, np.nan, 0.5, 0.8]))  # > 0.5, strictly
    assert stats["recall"] == 0.5 and stats["mean"] == pytest.approx(2.2 / 3)
    with pytest.raises(ValueError):
        statistics(np.array([]))


# ---------------------------------------------------------------------------------------------
# Unsupervised matching
# ---------------------------------------------------------------------------------------------

def test_match_unsupervised_is_optimal_not_greedy():
    # Proposal 0 is best for object 0 (0.9) but proposal 1 covers object 0 nearly as well (0.8) and
    # object 1 poorly; the optimum is 0 -> object 1, 1 -> object 0 (0.85 + 0.8 > 0.9 + 0.1).
    score = np.array([[0.9, 0.85], [0.8, 0.1], [0.0, 0.0]])
    j = np.repeat(score[:, :, None], 3, axis=2)
    f = j * 0.5
    jm, fm, assignment = match_unsupervised(j, f)
    assert assignment.tolist() == [1, 0]
    assert jm[:, 0].tolist() == [0.8, 0.85] and fm[:, 0].tolist() == [0.4, 0.425]


def test_match_unsupervised_pads_with_empty_proposals():
    j = np.array([[[0.9, 0.9], [0.95, 0.95]]])  # one proposal, two objects, two frames
    j_empty = np.array([[0.0, 0.0], [1.0, 0.0]])  # object 1 is absent from frame 0
    with pytest.raises(ValueError, match="empty"):
        match_unsupervised(j, j)
    jm, fm, assignment = match_unsupervised(j, j, j_empty, j_empty)
    assert assignment.tolist() == [0, -1]  # 0.9 + 0.5 beats 0.95 + 0
    assert jm.tolist() == [[0.9, 0.9], [1.0, 0.0]] and fm.tolist() == jm.tolist()


# ---------------------------------------------------------------------------------------------
# Folder evaluation
# ---------------------------------------------------------------------------------------------

def _rows(result):
    return [(o.name, o.stats()["J"]["mean"], o.stats()["F"]["mean"]) for o in result.objects]


def test_semi_supervised_folder_equals_reference(tmp_path):
    gt, pred = _write_davis(tmp_path, "semi-supervised")
    for name in ("00000.png", "00005.png"):  # the first and last frames are not scored, so not needed
        (pred / "alpha" / name).unlink()
    result = evaluate_davis(gt, pred, "semi-supervised", progress=False)
    ref_global, ref_rows = REFERENCE_EVALUATION["semi-supervised"]
    np.testing.assert_allclose(list(result.global_metrics().values()), ref_global, rtol=0, atol=1e-9)
    assert [r[0] for r in _rows(result)] == [r[0] for r in ref_rows]
    np.testing.assert_allclose([r[1:] for r in _rows(result)], [r[1:] for r in ref_rows], rtol=0, atol=1e-9)
    assert result.frames["alpha"] == ["00001", "00002", "00003", "00004"]


def test_unsupervised_folder_equals_reference(tmp_path):
    gt, pred = _write_davis(tmp_path, "unsupervised")
    result = evaluate_davis(gt, pred, "unsupervised", workers=2, progress=False)
    ref_global, ref_rows = REFERENCE_EVALUATION["unsupervised"]
    np.testing.assert_allclose(list(result.global_metrics().values()), ref_global, rtol=0, atol=1e-9)
    # The reference lists each sequence's matched rows in proposal order, not object order.
    np.testing.assert_allclose(sorted(r[1:] for r in _rows(result)), sorted(r[1:] for r in ref_rows),
                               rtol=0, atol=1e-9)
    beta = {o.object_id: o for o in result.objects if o.sequence == "beta"}
    assert beta[2].proposal is None and beta[3].proposal == 2  # 3 objects, 2 proposals
    assert beta[2].stats()["J"]["mean"] == pytest.approx(0.6)


def test_workers_do_not_change_results(tmp_path):
    gt, pred = _write_davis(tmp_path, "semi-supervised")
    one = evaluate_davis(gt, pred, "semi-supervised", workers=1, progress=False)
    two = evaluate_davis(gt, pred, "semi-supervised", workers=2, progress=False)
    assert _rows(one) == _rows(two)


def test_non_contiguous_object_ids(tmp_path):
    rng = np.random.default_rng(5)
    gts = [_ellipses(rng, 30, 40, [2, 9]) for _ in range(4)]
    gts[0][0, 0], gts[0][-1, -1] = 2, 9
    preds = [np.roll(g, 1, axis=1) for g in gts]
    for t, (g, p) in enumerate(zip(gts, preds)):
        _save(tmp_path / "gt" / "seq" / f"{t}.png", g)
        _save(tmp_path / "pred" / "seq" / f"{t}.png", p)
    result = evaluate_davis(tmp_path / "gt", tmp_path / "pred", "semi-supervised", progress=False)
    assert [o.name for o in result.objects] == ["seq_2", "seq_9"]
    expected = [jf_label_maps_direct(g, p, [2, 9]) for g, p in zip(gts[1:3], preds[1:3])]
    assert result.objects[1].j.tolist() == [e[0][1] for e in expected]
    assert result.objects[1].f.tolist() == [e[1][1] for e in expected]


def test_structure_problems_are_listed_together(tmp_path):
    gt, pred = _write_davis(tmp_path, "semi-supervised")
    for frame in pred.joinpath("gamma").iterdir():
        frame.unlink()
    pred.joinpath("gamma").rmdir()
    (pred / "beta" / "00002.png").unlink()
    _save(pred / "delta" / "00000.png", np.zeros((4, 4)))
    with pytest.raises(ValidationError) as err:
        evaluate_davis(gt, pred, "semi-supervised", progress=False)
    problems = err.value.problems
    assert len(problems) == 3
    assert any("delta" in p and "not in the ground truth" in p for p in problems)
    assert any("gamma" in p and "missing" in p for p in problems)
    assert any("beta" in p and "00002.png" in p for p in problems)


def test_content_problems_are_listed_together(tmp_path):
    gt, pred = _write_davis(tmp_path, "semi-supervised")
    _save(pred / "alpha" / "00002.png", np.zeros((10, 10)))  # wrong size
    bad = np.array(Image.open(pred / "beta" / "00001.png"))
    bad[0, 0], bad[0, 1] = 4, 255  # beta has objects 1..3
    _save(pred / "beta" / "00001.png", bad)
    (pred / "gamma" / "00001.png").write_bytes(b"not a png")
    with pytest.raises(ValidationError) as err:
        evaluate_davis(gt, pred, "semi-supervised", workers=2, progress=False)
    problems = err.value.problems
    assert len(problems) == 3
    assert any("alpha/00002.png: size 10x10" in p for p in problems)
    assert any("beta/00001.png: ids [4, 255]" in p for p in problems)
    assert any("gamma/00001.png" in p and "decoded" in p for p in problems)


def test_too_many_proposals_and_short_sequences(tmp_path):
    frames = [np.arange(25 * 4, dtype=np.uint8).reshape(10, 10) % 25 for _ in range(2)]
    for t, frame in enumerate(frames):
        _save(tmp_path / "gt" / "a" / f"{t}.png", np.where(frame > 20, 1, 0))
        _save(tmp_path / "pred" / "a" / f"{t}.png", frame)
    with pytest.raises(ValidationError, match="24 proposal ids"):
        evaluate_davis(tmp_path / "gt", tmp_path / "pred", "unsupervised", progress=False)
    with pytest.raises(ValidationError, match="at least 3"):  # two frames: nothing to score
        evaluate_davis(tmp_path / "gt", tmp_path / "pred", "semi-supervised", progress=False)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def test_cli_writes_reference_csvs(tmp_path, capsys):
    gt, pred = _write_davis(tmp_path, "semi-supervised")
    out = tmp_path / "out"
    args = ["evaluate-davis", "--gt", str(gt), "--pred", str(pred), "--task", "semi-supervised",
            "--out", str(out), "--no-progress", "--workers", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    ref_global, ref_rows = REFERENCE_EVALUATION["semi-supervised"]
    assert "J&F-Mean" in printed and f"{ref_global[0]:.3f}" in printed
    lines = (out / "global_results-semi-supervised.csv").read_text().splitlines()
    assert lines == ["J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay",
                     ",".join(f"{v:.3f}" for v in ref_global)]
    rows = (out / "per-sequence_results-semi-supervised.csv").read_text().splitlines()
    assert rows == ["Sequence,J-Mean,F-Mean"] + [f"{n},{j:.3f},{f:.3f}" for n, j, f in ref_rows]
    data = json.loads((out / "results.json").read_text())
    assert data["global"]["J&F-Mean"] == pytest.approx(ref_global[0], abs=1e-12)
    assert [o["name"] for o in data["objects"]] == [r[0] for r in ref_rows]
    assert len(data["objects"][0]["J_per_frame"]) == 4


def test_cli_failure_exits_2_and_removes_stale_results(tmp_path, capsys):
    gt, pred = _write_davis(tmp_path, "unsupervised")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / "global_results-unsupervised.csv"
    stale.write_text("J&F-Mean\n0.999\n")
    (pred / "alpha" / "00003.png").unlink()
    code = main(["evaluate-davis", "--gt", str(gt), "--pred", str(pred), "--task", "unsupervised",
                 "--out", str(out), "--no-progress"])
    assert code == 2
    assert "alpha: 1 of 6 frames missing" in capsys.readouterr().err
    assert not stale.exists() and not (out / "results.json").exists()
    assert main(["evaluate-davis", "--gt", str(tmp_path / "nowhere"), "--pred", str(pred),
                 "--task", "unsupervised", "--no-progress"]) == 2
