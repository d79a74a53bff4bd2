"""Semseg metrics against hand-computed cases and an independent straightforward implementation."""
from __future__ import annotations

import numpy as np
import pytest

from ovbench.metrics.confusion import StreamingConfusion, image_confusion
from ovbench.metrics.semseg import harmonic_mean, miou_batch, semseg_metrics


def metrics_of(pairs, k, base, novel, ignore=255):
    conf = StreamingConfusion(k)
    for pred, gt in pairs:
        conf.add(image_confusion(np.asarray(pred), np.asarray(gt), k, ignore))
    return semseg_metrics(conf.per_class(), base, novel)


def test_hand_computed_case():
    gt = [[0, 0, 1], [1, 2, 255]]
    pred = [[0, 1, 1], [1, 0, 2]]
    m = metrics_of([(pred, gt)], 3, base=[0, 1], novel=[2])
    # class 0: inter 1, union 3; class 1: inter 2, union 3; class 2: inter 0, union 1
    assert m["IoU"] == pytest.approx({"0": 100 / 3, "1": 200 / 3, "2": 0.0})
    assert m["mIoU"] == pytest.approx(100 / 3)
    assert m["mIoU_mmseg"] == pytest.approx(100 / 3)
    assert m["pAcc"] == pytest.approx(60.0)
    assert m["mAcc"] == pytest.approx(50.0)
    assert m["fwIoU"] == pytest.approx(40.0)
    assert m["mIoU_base"] == pytest.approx(50.0)
    assert m["mIoU_novel"] == pytest.approx(0.0)
    assert m["hIoU"] == 0.0


def test_absent_class_conventions_differ():
    gt = np.zeros((2, 4), dtype=np.uint8)
    pred = np.array([[0, 0, 2, 2], [0, 0, 2, 2]], dtype=np.uint8)
    m = metrics_of([(pred, gt)], 3, base=[0, 1], novel=[2])
    assert m["mIoU"] == pytest.approx(50.0)           # detectron2: class 2 has no GT, ignored
    assert m["mIoU_mmseg"] == pytest.approx(25.0)     # mmseg: class 2 union > 0, IoU 0 counts
    assert m["IoU"]["1"] is None and m["IoU"]["2"] is None
    assert m["mIoU_novel"] is None and m["hIoU"] is None
    assert m["num_classes_with_gt"] == 1


def test_all_ignore_image_contributes_nothing():
    gt = np.array([[0, 1]], dtype=np.uint8)
    pred = np.array([[0, 0]], dtype=np.uint8)
    ignored_gt = np.full((5, 5), 255, dtype=np.uint8)
    noisy_pred = np.full((5, 5), 1, dtype=np.uint8)
    assert metrics_of([(pred, gt)], 2, [0, 1], []) == metrics_of([(pred, gt), (noisy_pred, ignored_gt)], 2, [0, 1], [])
    only_ignore = metrics_of([(noisy_pred, ignored_gt)], 2, [0, 1], [])
    assert only_ignore["mIoU"] is None and only_ignore["pAcc"] is None


def test_harmonic_mean():
    assert harmonic_mean(50.0, 25.0) == pytest.approx(2 * 50 * 25 / 75)
    assert harmonic_mean(None, 3.0) is None
    assert harmonic_mean(0.0, 0.0) == 0.0


def naive_metrics(preds, gts, k, ignore):
    """Per-class loops over the concatenated dataset: an independent mIoU/pAcc."""
    p = np.concatenate([x.ravel() for x in preds]).astype(np.int64)
    g = np.concatenate([x.ravel() for x in gts]).astype(np.int64)
    keep = g != ignore
    p, g = p[keep], g[keep]
    ious = []
    for c in range(k):
        if (g == c).sum() == 0:
            continue
        inter = np.logical_and(p == c, g == c).sum()
        union = np.logical_or(p == c, g == c).sum()
        ious.append(inter / union)
    return 100 * float(np.mean(ious)), 100 * float((p == g).mean())


def random_maps(rng, k, ignore, dtype, blocky):
    """Noise maps (pixel counting path) or piecewise-constant ones (run-length path)."""
    if blocky:
        gt = np.kron(rng.integers(0, k, (4, 6)), np.ones((8, 8), dtype=np.int64))
        pred = np.roll(gt, 3, axis=1)
        pred[:, :5] = rng.integers(0, k)
        gt[rng.random(gt.shape) < 0.02] = ignore
    else:
        gt = rng.integers(0, k, (31, 47))
        gt[rng.random(gt.shape) < 0.1] = ignore
        pred = np.where(rng.random(gt.shape) < 0.5, gt, rng.integers(0, k, gt.shape))
        pred[pred == ignore] = 0
    return pred.astype(dtype), gt.astype(dtype)


@pytest.mark.parametrize("blocky", [False, True])
@pytest.mark.parametrize("k,ignore", [(5, 255), (40, 255), (300, 65535), (847, 65535)])
def test_parity_with_straightforward_implementation(k, ignore, blocky):
    rng = np.random.default_rng(k)
    dtype = np.uint16 if k > 255 else np.uint8
    preds, gts = zip(*(random_maps(rng, k, ignore, dtype, blocky) for _ in range(6)))
    m = metrics_of(zip(preds, gts), k, list(range(k)), [], ignore=ignore)
    miou, pacc = naive_metrics(preds, gts, k, ignore)
    assert m["mIoU"] == pytest.approx(miou, abs=1e-9)
    assert m["pAcc"] == pytest.approx(pacc, abs=1e-9)


def test_miou_batch_matches_metrics():
    rng = np.random.default_rng(0)
    stats = []
    for _ in range(4):
        gt = rng.integers(0, 6, (20, 20))
        pred = rng.integers(0, 6, (20, 20))
        gt[:3] = 255
        stats.append(image_confusion(pred, gt, 6, 255).per_class())
    stats = np.stack(stats)
    batch = miou_batch(stats)
    for s, v in zip(stats, batch):
        assert v == pytest.approx(semseg_metrics(s, range(6), [])["mIoU"])
    assert miou_batch(stats, [1, 3])[0] == pytest.approx(semseg_metrics(stats[0], [1, 3], [])["mIoU_base"])
