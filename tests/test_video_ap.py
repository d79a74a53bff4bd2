"""Video instance AP (YouTube-VIS definitions) and the checks of a YouTube-VIS results list."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ovbench.errors import ValidationError
from ovbench.metrics.detection import precision_summary
from ovbench.metrics.video_ap import (AREA_LABELS, AREA_RANGES, evaluate_video_ap, frame_areas,
                                      spatiotemporal_iou, video_ap_metrics)
from ovbench.submissions.rle import rle_areas
from ovbench.submissions.video_instance import check_tracks


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def box(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> dict:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return rle(m)


def literal_iou(dt_tracks, gt_tracks) -> np.ndarray:
    """YouTube-VIS's definition in loop form: per pair, per frame, merge-and-area."""
    out = np.zeros((len(dt_tracks), len(gt_tracks)))
    for i, d_seq in enumerate(dt_tracks):
        for j, g_seq in enumerate(gt_tracks):
            inter = union = 0.0
            for d, g in zip(d_seq, g_seq):
                if d and g:
                    inter += mask_utils.area(mask_utils.merge([d, g], intersect=True))
                    union += mask_utils.area(mask_utils.merge([d, g], intersect=False))
                elif d or g:
                    union += mask_utils.area(d or g)
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def random_tracks(rng: np.random.Generator, n: int, frames: int, h: int, w: int) -> list[list]:
    """Random masks with gaps (None), empty masks and blobs of random pixels."""
    tracks = []
    for _ in range(n):
        track = []
        for _ in range(frames):
            u = rng.random()
            if u < 0.25:
                track.append(None)
            elif u < 0.35:
                track.append(rle(np.zeros((h, w), np.uint8)))
            else:
                track.append(rle(rng.random((h, w)) < rng.uniform(0.1, 0.7)))
        tracks.append(track)
    return tracks


def track(video_id: int, category_id: int, segs: list, score: float | None = None, iscrowd: int = 0) -> dict:
    t = {"video_id": video_id, "category_id": category_id, "segmentations": segs}
    if score is None:
        t["iscrowd"] = iscrowd
    else:
        t["score"] = score
    return t


# ---------------------------------------------------------------- spatio-temporal IoU

def test_iou_hand_computed_two_of_three_frames():
    g = box(20, 20, 0, 0, 10, 10)
    half = box(20, 20, 0, 0, 10, 5)
    far = box(20, 20, 10, 10, 20, 20)
    iou = spatiotemporal_iou([[g, g, None], [half, None, far]], [[g, g, g]], 3)
    # 200 / 300; (50 + 0) / (100 + 100 + (100 + 100))
    np.testing.assert_allclose(iou, [[2 / 3], [50 / 400]])


def test_iou_is_zero_when_the_union_is_empty():
    empty = rle(np.zeros((4, 4), np.uint8))
    assert spatiotemporal_iou([[None, empty]], [[empty, None]], 2).tolist() == [[0.0]]


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_iou_equals_the_literal_definition(seed):
    rng = np.random.default_rng(seed)
    frames, h, w = 7, 9, 11
    dt, gt = random_tracks(rng, 6, frames, h, w), random_tracks(rng, 5, frames, h, w)
    for t in dt:
        t[0] = None                 # frame 0: ground truth only
    for t in gt:
        t[1] = None                 # frame 1: predictions only
    fast = spatiotemporal_iou(dt, gt, frames)
    assert fast.shape == (6, 5) and (fast > 0).any()
    np.testing.assert_array_equal(fast, literal_iou(dt, gt))


def test_iou_rejects_a_track_of_the_wrong_length():
    with pytest.raises(ValueError, match="track 0 has 2 frames"):
        spatiotemporal_iou([[None, None]], [[None, None, None]], 3)


def test_areas_of_more_than_255_masks():
    masks = [box(8, 8, 0, 0, 1 + k % 8, 2) for k in range(600)]
    assert rle_areas(masks).tolist() == [2 * (1 + k % 8) for k in range(600)]


def test_frame_areas_are_zero_for_missing_frames():
    areas = frame_areas([[box(8, 8, 0, 0, 2, 3), None, rle(np.zeros((8, 8)))]], 3)
    assert areas.tolist() == [[6.0, 0.0, 0.0]]


# ---------------------------------------------------------------- AP

def test_ap_hand_computed_iou_two_thirds():
    g = box(20, 20, 0, 0, 10, 10)
    gt = [track(1, 1, [g, g, g])]
    dt = [track(1, 1, [g, g, None], score=0.9)]
    result = evaluate_video_ap({1: (3, 20, 20)}, gt, dt, [1])
    m = video_ap_metrics(result, {"base": [1], "novel": []})
    # IoU 2/3 passes .50, .55, .60, .65 and fails .70 to .95: 4 of 10 thresholds at precision 1
    assert m["AP_all"] == pytest.approx(40.0)
    assert m["AP50_all"] == pytest.approx(100.0) and m["AP75_all"] == 0.0
    assert m["AR1"] == pytest.approx(40.0) and m["AR10"] == pytest.approx(40.0)
    assert m["AP_novel"] is None and m["AP_per_class"] == {"1": pytest.approx(40.0)}


def test_metric_keys():
    g = box(8, 8, 0, 0, 4, 4)
    result = evaluate_video_ap({1: (1, 8, 8)}, [track(1, 1, [g])], [track(1, 1, [g], score=0.5)], [1, 2])
    assert set(video_ap_metrics(result, {"base": [1], "novel": [2]})) == {
        "AP_all", "AP_base", "AP_novel", "AP50_all", "AP50_base", "AP50_novel", "AP75_all", "AP75_base",
        "AP75_novel", "APs_all", "APm_all", "APl_all", "AR1", "AR10", "AP_per_class"}


def test_partitions_average_over_their_own_classes():
    a, b = box(20, 20, 0, 0, 8, 8), box(20, 20, 10, 10, 20, 20)
    gt = [track(1, 1, [a, a]), track(1, 2, [b, b])]
    dt = [track(1, 1, [a, a], score=0.8), track(1, 2, [a, a], score=0.7), track(1, 3, [b, None], score=0.6)]
    result = evaluate_video_ap({1: (2, 20, 20)}, gt, dt, [1, 2, 3])
    m = video_ap_metrics(result, {"base": [1, 3], "novel": [2]})
    # class 3 has no ground truth: it counts in no mean (the LV-VIS server would give base 100 * 1/3)
    assert m["AP_base"] == pytest.approx(100.0)
    assert m["AP_novel"] == 0.0
    assert m["AP_all"] == pytest.approx(50.0)
    assert m["AP_per_class"] == {"1": pytest.approx(100.0), "2": 0.0, "3": None}


def test_predictions_are_matched_in_score_order():
    g, miss = box(20, 20, 0, 0, 10, 10), box(20, 20, 10, 10, 20, 20)
    gt = [track(1, 1, [g])]
    dt = [track(1, 1, [g], score=0.3), track(1, 1, [miss], score=0.9)]   # the hit comes second by score
    m = video_ap_metrics(evaluate_video_ap({1: (1, 20, 20)}, gt, dt, [1]), {"base": [1], "novel": []})
    assert m["AP_all"] == pytest.approx(50.0)


def test_only_the_top_100_tracks_of_a_video_and_class_count():
    g, miss = box(20, 20, 0, 0, 10, 10), box(20, 20, 10, 10, 20, 20)
    dt = [track(1, 1, [g], score=0.1)] + [track(1, 1, [miss], score=0.5 + i / 1000) for i in range(100)]
    result = evaluate_video_ap({1: (1, 20, 20)}, [track(1, 1, [g])], dt, [1])
    assert precision_summary(result) == 0.0
    result = evaluate_video_ap({1: (1, 20, 20)}, [track(1, 1, [g])], dt[:100], [1])
    assert precision_summary(result) == pytest.approx(100 / 100, abs=0.02)


def test_crowd_ground_truth_is_ignored_and_matched_by_plain_iou():
    person, crowd = box(20, 20, 0, 0, 10, 10), box(20, 20, 0, 10, 20, 20)
    gt = [track(1, 1, [person]), track(1, 1, [crowd], iscrowd=1)]
    on_crowd = [track(1, 1, [person], score=0.5), track(1, 1, [crowd], score=0.9)]
    assert precision_summary(evaluate_video_ap({1: (1, 20, 20)}, gt, on_crowd, [1])) == pytest.approx(100.0)
    # inside the crowd region but IoU 40/200: YouTube-VIS does not use COCO's crowd IoU (40/40)
    inside = [track(1, 1, [person], score=0.5), track(1, 1, [box(20, 20, 0, 10, 4, 20)], score=0.9)]
    assert precision_summary(evaluate_video_ap({1: (1, 20, 20)}, gt, inside, [1])) == pytest.approx(50.0)


def test_area_ranges_use_the_mean_non_empty_area():
    big = box(300, 300, 0, 0, 150, 150)                      # 22500 px
    empty = rle(np.zeros((300, 300), np.uint8))
    videos = {1: (2, 300, 300), 2: (4, 300, 300), 3: (1, 300, 300)}
    gt = [track(1, 1, [box(300, 300, 0, 0, 100, 100), big]),   # mean 16250 < 128^2: small
          track(2, 2, [None, empty, big, big]),                 # mean 22500: medium (not 11250 or 15000)
          track(3, 3, [box(300, 300, 0, 0, 128, 128)])]         # exactly 128^2: small and medium
    dt = [track(t["video_id"], t["category_id"], [None if s is empty else s for s in t["segmentations"]],
                score=0.5) for t in gt]
    result = evaluate_video_ap(videos, gt, dt, [1, 2, 3])
    assert result.area_labels == AREA_LABELS and AREA_RANGES[1][1] == 128 ** 2
    expected = {1: (100.0, None, None), 2: (None, 100.0, None), 3: (100.0, 100.0, None)}
    for c, values in expected.items():
        got = tuple(precision_summary(result, [c], area=a) for a in ("small", "medium", "large"))
        assert got == pytest.approx(values), c
    m = video_ap_metrics(result, {"base": [1, 2, 3], "novel": []})
    assert (m["APs_all"], m["APm_all"], m["APl_all"]) == pytest.approx((100.0, 100.0, None))


def random_dataset(seed: int, frames: int, num_videos: int = 5, categories=(1, 2, 3, 4)):
    """Moving boxes as ground truth; predictions: jittered copies, wrong classes and false positives."""
    rng = np.random.default_rng(seed)
    h = w = 32
    videos = {v: (frames, h, w) for v in range(1, num_videos + 1)}
    gt, dt = [], []
    for v in videos:
        for _ in range(int(rng.integers(1, 4))):
            c = int(rng.choice(categories))
            y, x, s = int(rng.integers(0, 20)), int(rng.integers(0, 20)), int(rng.integers(4, 12))
            segs = [box(h, w, y + t, x, y + t + s, x + s) if y + t < h else None for t in range(frames)]
            gt.append(track(v, c, segs))
            for _ in range(int(rng.integers(0, 3))):
                dy, dx = rng.integers(-1, 2, size=2)
                jitter = [box(h, w, max(y + t + dy, 0), max(x + dx, 0), y + t + dy + s, x + dx + s)
                          if rng.random() > 0.2 else None for t in range(frames)]
                if all(j is None for j in jitter):
                    continue
                label = c if rng.random() > 0.2 else int(rng.choice(categories))
                dt.append(track(v, label, jitter, score=float(rng.random())))
        for _ in range(int(rng.integers(0, 3))):
            y, x = rng.integers(0, 24, size=2)
            dt.append(track(v, int(rng.choice(categories)), [box(h, w, y, x, y + 8, x + 8)] * frames,
                            score=float(rng.random())))
    return videos, gt, dt


@pytest.mark.parametrize("seed", range(3))
def test_partition_slice_equals_an_evaluation_restricted_to_the_partition(seed):
    videos, gt, dt = random_dataset(seed, frames=4)
    full = evaluate_video_ap(videos, gt, dt, [1, 2, 3, 4])
    for part in ([1, 2], [3, 4], [2]):
        alone = evaluate_video_ap(videos, gt, dt, part)
        for iou in (None, 0.5, 0.75):
            sliced, own = precision_summary(full, part, iou), precision_summary(alone, None, iou)
            assert (sliced is None) == (own is None)
            assert sliced == pytest.approx(own)
    assert full.stats["AP"] > 0


@pytest.mark.parametrize("seed", range(2))
def test_single_frame_videos_give_pycocotools_mask_ap(seed):
    """With one frame per video the spatio-temporal IoU is the mask IoU: COCOeval on images agrees."""
    videos, gt, dt = random_dataset(seed, frames=1, num_videos=8)
    result = evaluate_video_ap(videos, gt, dt, [1, 2, 3, 4])
    dataset = {"images": [{"id": v, "height": 32, "width": 32} for v in videos],
               "categories": [{"id": c} for c in (1, 2, 3, 4)],
               "annotations": [{"id": k + 1, "image_id": t["video_id"], "category_id": t["category_id"],
                                "segmentation": t["segmentations"][0], "iscrowd": 0,
                                "area": float(mask_utils.area(t["segmentations"][0])),
                                "bbox": list(mask_utils.toBbox(t["segmentations"][0]))} for k, t in enumerate(gt)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes([{"image_id": t["video_id"], "category_id": t["category_id"],
                                           "segmentation": t["segmentations"][0], "score": t["score"]}
                                          for t in dt]), "segm")
        ev.params.areaRng = AREA_RANGES
        ev.evaluate()
        ev.accumulate()
    np.testing.assert_array_equal(result.precision, ev.eval["precision"][..., -1])
    assert precision_summary(result) > 0


# ---------------------------------------------------------------- checking a results list

VIDEOS = {1: (3, 8, 8), 2: (2, 8, 6)}
CATEGORIES = {1, 2}


def valid_track(video_id: int = 1, category_id: int = 1, score: float = 0.5) -> dict:
    n, h, w = VIDEOS[video_id]
    return {"video_id": video_id, "category_id": category_id, "score": score,
            "segmentations": [box(h, w, 0, 0, 2 + t, 3) for t in range(n - 1)] + [None]}


def problems_of(entries, **kwargs) -> str:
    with pytest.raises(ValidationError) as info:
        check_tracks(entries, VIDEOS, CATEGORIES, **kwargs)
    return str(info.value)


def test_a_valid_submission_passes_unchanged():
    entries = [valid_track(), valid_track(2, 2, 0.9), valid_track(score=0.25)]
    checked = check_tracks(entries, VIDEOS, CATEGORIES)
    assert checked.entries == entries and checked.truncation.to_dict() == {"cap": 100, "videos": 0, "dropped": 0}


@pytest.mark.parametrize("change, message", [
    ({"video_id": 7}, "video_id that is not in"),
    ({"video_id": "1"}, "video_id that is not in"),
    ({"category_id": 9}, "category_id that is not one of"),
    ({"score": 1.5}, "one outside [0, 1]"),
    ({"score": float("nan")}, "non-finite score"),
    ({"segmentations": "rle"}, "segmentations that are not a list"),
    ({"segmentations": [None, box(8, 8, 0, 0, 2, 2)]}, "different from their video's number of frames"),
    ({"segmentations": [None, [[0, 0, 4, 0, 4, 4]], None]}, "not compressed RLE"),
    ({"segmentations": [None, {"size": [8, 8], "counts": [64]}, None]}, "not compressed RLE"),
    ({"segmentations": [None, box(8, 6, 0, 0, 2, 2), None]}, "size different from their video's"),
    ({"segmentations": [None, {"size": [8, 8], "counts": "0"}, None]}, "malformed RLE counts"),
    ({"segmentations": [None, rle(np.zeros((8, 8))), None]}, "empty mask (area 0); write null"),
    ({"segmentations": [None, None, None]}, "null in every frame"),
])
def test_each_rule(change, message):
    text = problems_of([valid_track(), {**valid_track(), **change}])
    assert "1 problem(s)" in text and message in text and "entry 1" in text


def test_missing_keys_and_non_objects():
    text = problems_of([valid_track(), {"video_id": 1}, 5])
    assert "entry 1 has no category_id, score, segmentations" in text and "entry 2 is int" in text


def test_duplicates():
    text = problems_of([valid_track(), valid_track(category_id=2), valid_track()])
    assert "1 duplicate tracks" in text and "entries 0 and 2" in text


def test_empty_list():
    assert "nothing to score" in problems_of([])


def test_every_problem_is_reported_at_once():
    bad = [{**valid_track(), "video_id": 9}, {**valid_track(), "score": -1},
           {**valid_track(), "segmentations": [None, rle(np.zeros((8, 8))), None]},
           {**valid_track(), "segmentations": [None, rle(np.zeros((8, 8))), rle(np.zeros((8, 8)))]}]
    text = problems_of(bad)
    assert "3 problem(s)" in text and "3 frames have an empty mask" in text
    assert "entry 2 frame 1; entry 3 frame 1; entry 3 frame 2" in text


def test_more_than_the_cap_is_an_error_unless_truncated():
    entries = [valid_track(score=s) for s in (0.1, 0.9, 0.5)] + [valid_track(2, 1)]
    for e, s in zip(entries, (0.1, 0.9, 0.5)):     # three distinct tracks in video 1
        e["segmentations"][-1] = box(8, 8, 0, 0, 1, 1 + int(10 * s) % 8)
    assert "video 1: 3" in problems_of(entries, max_per_video=2)
    checked = check_tracks(entries, VIDEOS, CATEGORIES, max_per_video=2, truncate=True)
    assert [e["score"] for e in checked.entries] == [0.9, 0.5, 0.5]
    assert checked.entries[-1]["video_id"] == 2
    assert checked.truncation.to_dict() == {"cap": 2, "videos": 1, "dropped": 1}
