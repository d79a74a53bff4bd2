"""Detection metrics: hand-computed AP, partition slicing, per-image caps, federated LVIS, backend parity."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from ovbench.data.detection import DetectionGroundTruth
from ovbench.evaluation.detection import (evaluate_detection_submission, instances_to_coco_results,
                                          score_detections)
from ovbench.evaluation.detection_backends import COCO_STATS, LVIS_STATS, evaluate_coco, evaluate_lvis
from ovbench.protocols.schema import protocol_from_dict
from ovbench.submissions.detection import check_detections

SIZE = (100, 120)  # height, width of every test image


def detection_protocol(classes, style="coco", caps=(100, 300), labels="ann.json"):
    """A small detection protocol; ``classes`` is ``[(id, name, partition[, frequency])]``."""
    table = [{"id": c[0], "name": c[1], "partition": c[2], **({"frequency": c[3]} if len(c) > 3 else {})}
             for c in classes]
    return protocol_from_dict({
        "id": f"toy-{style}", "version": 1, "task": "detection", "dataset": "toy", "split": "val",
        "layout": {"images": "{file_name}", "labels": labels}, "metrics": ["AP"], "classes": table,
        "evaluation": {"style": style, "iou_types": ["bbox", "segm"], "max_detections": list(caps)}})


def box_mask(box):
    x, y, w, h = box
    m = np.zeros(SIZE, dtype=np.uint8)
    m[int(y):int(y + h), int(x):int(x + w)] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": list(SIZE), "counts": rle["counts"].decode("ascii")}


def write_gt(root: Path, protocol, boxes, images=(1,), image_extra=None, name="ann.json"):
    """``boxes``: ``[(image_id, category_id, [x, y, w, h])]``; boxes are whole-pixel rectangles."""
    anns = [{"id": i + 1, "image_id": img, "category_id": cat, "bbox": list(map(float, b)),
             "area": float(b[2] * b[3]), "iscrowd": 0, "segmentation": box_mask(b)}
            for i, (img, cat, b) in enumerate(boxes)]
    imgs = [{"id": i, "height": SIZE[0], "width": SIZE[1], "file_name": f"{i}.png",
             **((image_extra or {}).get(i, {}))} for i in images]
    cats = [{"id": c.id, "name": c.name, **({"frequency": c.frequency} if c.frequency else {})}
            for c in protocol.classes]
    (root / name).write_text(json.dumps({"images": imgs, "annotations": anns, "categories": cats}))
    return root


def det(img, cat, box, score, mask=True):
    d = {"image_id": img, "category_id": cat, "bbox": list(map(float, box)), "score": score}
    if mask:
        d["segmentation"] = box_mask(box)
    return d


def evaluate(tmp_path, protocol, dets, backend="faster-coco-eval"):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    return evaluate_detection_submission(protocol, path, tmp_path, backend=backend, progress=False).metrics


TWO_CLASSES = [(3, "cat", "base"), (7, "dog", "novel")]


@pytest.mark.parametrize("backend", ["faster-coco-eval", "pycocotools"])
def test_hand_computed_ap_with_a_false_positive_between_two_hits(tmp_path, backend):
    p = detection_protocol(TWO_CLASSES)
    write_gt(tmp_path, p, [(1, 3, [10, 10, 20, 20]), (1, 3, [60, 50, 30, 30])])
    dets = [det(1, 3, [10, 10, 20, 20], 0.9), det(1, 3, [40, 0, 10, 10], 0.8), det(1, 3, [60, 50, 30, 30], 0.7)]
    bbox = evaluate(tmp_path, p, dets, backend)["bbox"]
    # recall 0.5 at precision 1, recall 1 at precision 2/3: 51 recall points at 1, 50 at 2/3
    expected = (51 * 1.0 + 50 * 2 / 3) / 101 * 100
    assert bbox["AP50_base@100"] == pytest.approx(expected)
    assert bbox["AP_base@100"] == pytest.approx(expected)        # exact boxes: every IoU threshold alike
    assert bbox["AP_novel@100"] is None                           # no novel ground truth
    assert bbox["AP_all@100"] == pytest.approx(expected)


def test_ap_counts_the_iou_thresholds_a_match_passes(tmp_path):
    p = detection_protocol(TWO_CLASSES)
    write_gt(tmp_path, p, [(1, 3, [0, 0, 50, 50])])
    # a 50x31 box inside the 50x50 ground truth: IoU 0.62 passes 0.50, 0.55, 0.60 only
    bbox = evaluate(tmp_path, p, [det(1, 3, [0, 0, 50, 31], 0.5)])["bbox"]
    assert bbox["AP50_all@100"] == pytest.approx(100.0)
    assert bbox["AP75_all@100"] == pytest.approx(0.0)
    assert bbox["AP_all@100"] == pytest.approx(30.0)


def test_partitions_slice_one_generalized_evaluation(tmp_path):
    p = detection_protocol(TWO_CLASSES)
    write_gt(tmp_path, p, [(1, 3, [10, 10, 20, 20]), (1, 7, [60, 50, 30, 30])])
    # the dog is detected as a cat: a miss for dog and a false positive for cat
    dets = [det(1, 3, [10, 10, 20, 20], 0.9), det(1, 3, [60, 50, 30, 30], 0.8)]
    m = evaluate(tmp_path, p, dets)
    for iou in ("bbox", "segm"):
        assert m[iou]["AP50_base@100"] == pytest.approx(100.0)
        assert m[iou]["AP50_novel@100"] == pytest.approx(0.0)
        assert m[iou]["AP50_all@100"] == pytest.approx(50.0)
        assert m[iou]["AP_per_class@100"] == {"3": pytest.approx(100.0), "7": pytest.approx(0.0)}


def random_world(rng, n_images=12, classes=(3, 7, 9), dets_per_image=40):
    gt, dets = [], []
    for img in range(1, n_images + 1):
        for _ in range(rng.integers(1, 5)):
            w, h = rng.integers(5, 60, 2)
            x, y = rng.integers(0, SIZE[1] - w), rng.integers(0, SIZE[0] - h)
            gt.append((img, int(rng.choice(classes)), [int(x), int(y), int(w), int(h)]))
        for _ in range(dets_per_image):
            w, h = rng.integers(5, 60, 2)
            x, y = rng.integers(0, SIZE[1] - w), rng.integers(0, SIZE[0] - h)
            dets.append(det(img, int(rng.choice(classes)), [int(x), int(y), int(w), int(h)], float(rng.random())))
    for img, cat, box in gt:                      # jittered true positives
        if rng.random() < 0.8:
            b = [max(0, box[0] + int(rng.integers(-3, 4))), max(0, box[1] + int(rng.integers(-3, 4))), box[2], box[3]]
            dets.append(det(img, cat, b, float(rng.random())))
    return gt, dets


THREE_CLASSES = [(3, "cat", "base"), (7, "dog", "novel"), (9, "cow", "base")]


def test_partition_numbers_equal_the_library_run_on_that_partition_alone(tmp_path):
    p = detection_protocol(THREE_CLASSES)
    gt_boxes, dets = random_world(np.random.default_rng(1))
    write_gt(tmp_path, p, gt_boxes, images=range(1, 13))
    gt = DetectionGroundTruth.load(p, tmp_path)
    checked = check_detections(dets, gt.images, gt.category_ids, 300)
    metrics, _ = score_detections(p, gt, checked, "pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    coco = COCO(str(tmp_path / "ann.json"))
    for part, ids in (("base", [3, 9]), ("novel", [7]), ("all", [3, 7, 9])):
        ev = COCOeval(coco, coco.loadRes([dict(d) for d in dets]), "bbox")
        ev.params.catIds = ids
        ev.evaluate(), ev.accumulate(), ev.summarize()
        assert metrics["bbox"][f"AP_{part}@100"] == pytest.approx(ev.stats[0] * 100)
        assert metrics["bbox"][f"AP50_{part}@100"] == pytest.approx(ev.stats[1] * 100)
        assert metrics["bbox"][f"AP75_{part}@100"] == pytest.approx(ev.stats[2] * 100)


def test_the_cap_of_100_and_of_300_detections_per_image_differ(tmp_path):
    p = detection_protocol(TWO_CLASSES)
    write_gt(tmp_path, p, [(1, 3, [10, 10, 20, 20])])
    # 149 higher-scoring dogs push the one cat hit to rank 150 in its image: the cap is per
    # image (as a detector's post-processing applies it), not per image and class
    dets = [det(1, 7, [70, 5 + (i % 40), 8, 8 + i // 40], 0.9 - i * 0.001, mask=False) for i in range(149)]
    dets.append(det(1, 3, [10, 10, 20, 20], 0.5, mask=False))
    bbox = evaluate(tmp_path, p, dets)["bbox"]
    assert bbox["AP50_base@100"] == pytest.approx(0.0)
    assert bbox["AP50_base@300"] == pytest.approx(100.0)
    # the same hit behind 149 false cats: precision 1/150 at every recall point at @300
    dets = [dict(d, category_id=3) for d in dets]
    bbox = evaluate(tmp_path, p, dets)["bbox"]
    assert bbox["AP50_base@100"] == pytest.approx(0.0)
    assert bbox["AP50_base@300"] == pytest.approx(100 / 150)


def test_masks_are_optional_and_their_absence_is_reported(tmp_path):
    p = detection_protocol(TWO_CLASSES)
    write_gt(tmp_path, p, [(1, 3, [10, 10, 20, 20])])
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([det(1, 3, [10, 10, 20, 20], 0.9, mask=False)]))
    result = evaluate_detection_submission(p, path, tmp_path, progress=False)
    assert set(result.metrics) == {"bbox"}
    assert "segm" in result.evaluation_info()["skipped"]


@pytest.mark.parametrize("backend", ["faster-coco-eval", "pycocotools"])
def test_mask_ap_uses_mask_area_for_size_ranges(tmp_path, backend):
    p = detection_protocol(TWO_CLASSES)
    write_gt(tmp_path, p, [(1, 3, [0, 0, 40, 40])])                # 1600 px: medium
    hit = det(1, 3, [0, 0, 40, 40], 0.9)
    miss = det(1, 3, [60, 50, 40, 40], 0.95)                        # a medium mask ...
    miss["bbox"] = [60.0, 50.0, 30.0, 30.0]                         # ... whose box (900 px) is small
    segm = evaluate(tmp_path, p, [hit, miss], backend)["segm"]
    # judged by its mask the miss is a medium false positive ranked first; by its box it
    # would be outside the medium range and ignored (APm 100)
    assert segm["APm_all@100"] == pytest.approx(50.0)


@pytest.mark.parametrize("iou", ["bbox", "segm"])
def test_fast_backend_equals_pycocotools_on_all_twelve_stats(tmp_path, iou):
    p = detection_protocol(THREE_CLASSES)
    gt_boxes, dets = random_world(np.random.default_rng(2), dets_per_image=60)
    write_gt(tmp_path, p, gt_boxes, images=range(1, 13))
    gt = json.loads((tmp_path / "ann.json").read_text())
    fast = evaluate_coco("faster-coco-eval", gt, dets, iou, 100)
    ref = evaluate_coco("pycocotools", gt, dets, iou, 100)
    assert list(fast.stats) == list(COCO_STATS)
    assert fast.stats == pytest.approx(ref.stats, abs=1e-12)
    assert 0 < ref.stats["AP"] < 1                                   # a non-trivial case
    for cap in (10, 100, 300):     # the metrics come from the precision array at the cap
        fast = evaluate_coco("faster-coco-eval", gt, dets, iou, cap)
        ref = evaluate_coco("pycocotools", gt, dets, iou, cap)
        np.testing.assert_allclose(fast.precision, ref.precision, atol=1e-12)
        assert fast.category_ids == ref.category_ids


def lvis_setup(tmp_path):
    classes = [(1, "aardvark", "novel", "r"), (2, "bagel", "base", "c"), (3, "cup", "base", "f")]
    p = detection_protocol(classes, style="lvis", caps=(300,))
    extra = {1: {"neg_category_ids": [2], "not_exhaustive_category_ids": [3]},
             2: {"neg_category_ids": [1, 3], "not_exhaustive_category_ids": []},
             3: {"neg_category_ids": [], "not_exhaustive_category_ids": []}}
    boxes = [(1, 1, [10, 10, 20, 20]), (1, 3, [50, 50, 20, 20]), (2, 2, [5, 5, 30, 30]), (3, 3, [0, 0, 50, 40])]
    write_gt(tmp_path, p, boxes, images=(1, 2, 3), image_extra=extra)
    hits = [det(1, 1, [10, 10, 20, 20], 0.6), det(1, 3, [50, 50, 20, 20], 0.6),
            det(2, 2, [5, 5, 30, 30], 0.6), det(3, 3, [0, 0, 50, 40], 0.6)]
    return p, hits


@pytest.mark.parametrize("backend", ["faster-coco-eval", "lvis"])
def test_lvis_federated_rules(tmp_path, backend):
    p, hits = lvis_setup(tmp_path)
    base = evaluate(tmp_path, p, hits, backend)["bbox"]
    assert base["AP@300"] == pytest.approx(100.0)
    # image 3 says nothing about 'aardvark' (neither annotated nor negative): not scored at all
    unverified = evaluate(tmp_path, p, hits + [det(3, 1, [60, 60, 20, 20], 0.9)], backend)["bbox"]
    assert unverified == base
    # image 1 lists 'cup' as not exhaustively annotated: an unmatched cup is no false positive
    not_exhaustive = evaluate(tmp_path, p, hits + [det(1, 3, [80, 0, 20, 20], 0.9)], backend)["bbox"]
    assert not_exhaustive["APf@300"] == pytest.approx(100.0)
    # image 2 lists 'aardvark' as absent: detecting one there is a false positive ranked first
    negative = evaluate(tmp_path, p, hits + [det(2, 1, [60, 60, 20, 20], 0.9)], backend)["bbox"]
    assert negative["APr@300"] == pytest.approx((1 / 2) * 100)
    assert negative["APc@300"] == pytest.approx(100.0)


@pytest.mark.parametrize("iou", ["bbox", "segm"])
def test_fast_lvis_mode_equals_the_official_lvis_api(tmp_path, iou):
    classes = [(1, "aardvark", "novel", "r"), (3, "cat", "base", "c"), (7, "dog", "base", "f"),
               (9, "cow", "base", "f")]
    p = detection_protocol(classes, style="lvis", caps=(300,))
    rng = np.random.default_rng(3)
    gt_boxes, dets = random_world(rng, classes=(1, 3, 7, 9))
    ids = range(1, 13)
    extra = {i: {"neg_category_ids": [int(c) for c in rng.choice([1, 3, 7, 9], 2, replace=False)
                                      if not any(g[0] == i and g[1] == c for g in gt_boxes)],
                 "not_exhaustive_category_ids": [int(rng.choice([3, 7]))] if i % 3 == 0 else []} for i in ids}
    write_gt(tmp_path, p, gt_boxes, images=ids, image_extra=extra)
    gt = json.loads((tmp_path / "ann.json").read_text())
    fast = evaluate_lvis("faster-coco-eval", tmp_path / "ann.json", gt, dets, iou, 300)
    ref = evaluate_lvis("lvis", tmp_path / "ann.json", gt, dets, iou, 300)
    assert list(ref.stats) == list(LVIS_STATS)
    assert fast.stats == pytest.approx(ref.stats, abs=1e-12)
    assert 0 < ref.stats["AP"] < 1


def test_lvis_api_needs_the_numpy_adapter():
    """If this starts failing, lvis fixed ``np.float`` and the adapter can go."""
    lvis_eval = pytest.importorskip("lvis.eval")
    source = Path(lvis_eval.__file__).read_text()
    assert "np.float)" in source
    with pytest.raises(AttributeError):
        np.float  # noqa: B018


def test_numpy_aliases_exist_only_inside_the_adapter():
    from ovbench.evaluation.lvis_compat import numpy_aliases
    with numpy_aliases():
        assert np.float is float
    assert "float" not in np.__dict__


def test_instances_to_coco_results_xyxy_to_xywh_is_exact():
    rng = np.random.default_rng(6)
    corners = np.sort(rng.uniform(1, 640, (200, 2, 2)).astype(np.float32), axis=1)  # x0 < x1, y0 < y1
    boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]], axis=1)
    results = instances_to_coco_results(np.int64(5), boxes, np.full(200, 0.5, np.float32), np.full(200, 9))
    assert [r["image_id"] for r in results] == [5] * 200 and all(type(r["image_id"]) is int for r in results)
    for (x0, y0, x1, y1), r in zip(boxes.astype(np.float64), results):
        x, y, w, h = r["bbox"]
        assert (x, y) == (x0, y0) and (x + w, y + h) == (x1, y1) and w == x1 - x0 and h == y1 - y0
    simple = instances_to_coco_results(1, [[1.5, 2.25, 10.75, 20.5]], [0.75], [14])
    assert simple == [{"image_id": 1, "category_id": 14, "bbox": [1.5, 2.25, 9.25, 18.25], "score": 0.75}]
