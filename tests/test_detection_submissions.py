"""Detection submissions: validation rules, the RLE checker, truncation, loading, ground truth, CLI.

Everything runs on a hand-made synth-ovd ground truth (three 40x30 images, rectangle instances)
written to tmp_path; no `ovbench data synth`.
"""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import encode, encode_runs, rect_mask
from ovbench.cli import main
from ovbench.data.detection import DetectionGroundTruth, check_categories
from ovbench.errors import OvbenchError, ValidationError
from ovbench.evaluation.detection import DetectionEvaluator, evaluate_detection_submission
from ovbench.protocols import get_protocol
from ovbench.submissions.detection import check_detections, load_detections, top_per_image
from ovbench.submissions.rle import rle_run_totals

PROTOCOL = get_protocol("synth-ovd")
H, W = 30, 40
IMAGES = {1: (H, W), 2: (H, W), 3: (H, W)}
CATEGORIES = {c.id for c in PROTOCOL.classes}
CAP = 300
BALL, CAR, DOG, CAT = 8, 10, 14, 15     # DOG is novel, the others base
#: Ground-truth instances: (image id, category id, x, y, w, h); the mask is the box's rectangle.
GT = [(1, BALL, 2, 3, 10, 8), (1, DOG, 20, 10, 12, 15), (2, CAR, 5, 5, 20, 10),
      (3, CAT, 0, 0, 8, 6), (3, DOG, 25, 12, 10, 14)]


# --------------------------------------------------------------------------- helpers

def rle(mask: np.ndarray) -> dict[str, Any]:
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": encode(mask)}


def categories() -> list[dict[str, Any]]:
    return [{"id": c.id, "name": c.name, "supercategory": "thing"} for c in PROTOCOL.classes]


def gt_document(cats: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    images = [{"id": i, "file_name": f"val/{i}.png", "height": h, "width": w} for i, (h, w) in IMAGES.items()]
    anns = [{"id": k + 1, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
             "segmentation": rle(rect_mask(x, y, w, h))} for k, (i, c, x, y, w, h) in enumerate(GT)]
    return {"images": images, "annotations": anns, "categories": categories() if cats is None else cats}


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def data_root(tmp_path) -> Path:
    root = tmp_path / "data"
    write_json(root / "detection" / "instances_val.json", gt_document())
    return root


def det(image_id: int = 1, category_id: int = BALL, bbox=(2, 3, 10, 8), score: float = 0.9,
        mask: bool = False) -> dict[str, Any]:
    entry = {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}
    if mask:
        x, y, w, h = (int(v) for v in bbox)
        entry["segmentation"] = rle(rect_mask(x, y, w, h))
    return entry


def perfect(masks: bool = True) -> list[dict[str, Any]]:
    """One exact detection per ground-truth instance."""
    return [det(i, c, (x, y, w, h), 0.9 - 0.1 * k, mask=masks) for k, (i, c, x, y, w, h) in enumerate(GT)]


def junk(image_id: int, n: int, score: float = 0.01, category_id: int = BALL) -> list[dict[str, Any]]:
    """``n`` distinct low-scoring boxes (distinct, so never duplicates of each other)."""
    return [det(image_id, category_id, (k % 35, k // 35 % 25, 3, 4 + k // 875), score) for k in range(n)]


def error_of(entries: list[Any], images=IMAGES, cap: int = CAP, **kw) -> str:
    with pytest.raises(ValidationError) as info:
        check_detections(entries, images, CATEGORIES, cap, source="preds.json", **kw)
    message = str(info.value)
    assert message.startswith("preds.json: ") and "fix: " in message
    return message


def evaluate_cli(*args: str) -> int:
    return main(["evaluate", "--protocol", "synth-ovd", "--no-progress", *args])


# --------------------------------------------------------------------------- valid submissions pass

def test_valid_submission_passes_with_and_without_masks():
    with_masks = check_detections(perfect(), IMAGES, CATEGORIES, CAP)
    assert with_masks.has_masks and with_masks.entries == perfect()
    assert with_masks.max_per_image == 2 and with_masks.truncation.to_dict() == {"cap": 300, "images": 0, "dropped": 0}
    plain = check_detections(perfect(masks=False), IMAGES, CATEGORIES, CAP)
    assert not plain.has_masks and plain.entries == perfect(masks=False) and plain.max_per_image == 2
    # exactly the cap is fine; scores 0 and 1 (ints too) are inside [0, 1]
    edge = junk(2, CAP) + [det(score=0), det(score=1, bbox=(0, 0, 1, 1)), det(score=1.0, bbox=(0, 0, 2, 2))]
    assert check_detections(edge, IMAGES, CATEGORIES, CAP).max_per_image == CAP


# --------------------------------------------------------------------------- one rule at a time

IMAGE_RULE = "entries have an image_id that is not in the protocol's annotation file"
CATEGORY_RULE = "entries have a category_id that is not one of the protocol's classes"
SCORE_RULE = "entries have a non-finite score or one outside [0, 1]"
BBOX_RULE = "entries have a bbox that is not 4 finite numbers [x, y, w, h]"
SIZE_RULE = "entries have a box of zero or negative width or height"
KEYS_RULE = "entries lack required keys"
OBJECT_RULE = "entries are not objects"


@pytest.mark.parametrize("bad, rule, example", [
    (det(image_id=99), IMAGE_RULE, "entry 2: 99"),
    (det(image_id=0), IMAGE_RULE, "entry 2: 0"),
    (det(image_id="1"), IMAGE_RULE, "entry 2: '1'"),
    (det(image_id=1.0), IMAGE_RULE, "entry 2: 1.0"),
    (det(category_id=7), CATEGORY_RULE, "entry 2: 7"),           # a synth-ov stuff class, not in synth-ovd
    (det(category_id=24), CATEGORY_RULE, "entry 2: 24"),
    (det(category_id=True), CATEGORY_RULE, "entry 2: True"),
    (det(category_id=8.0), CATEGORY_RULE, "entry 2: 8.0"),
    (det(category_id="ball"), CATEGORY_RULE, "entry 2: 'ball'"),
    (det(score=float("nan")), SCORE_RULE, "entry 2: nan"),
    (det(score=float("inf")), SCORE_RULE, "entry 2: inf"),
    (det(score=-0.1), SCORE_RULE, "entry 2: -0.1"),
    (det(score=1.5), SCORE_RULE, "entry 2: 1.5"),
    (det(score="0.5"), SCORE_RULE, "entry 2: '0.5'"),
    (det(score=True), SCORE_RULE, "entry 2: True"),
    (det(score=None), SCORE_RULE, "entry 2: None"),
    (det(bbox=(2, 3, 0, 8)), SIZE_RULE, "entry 2: [2, 3, 0, 8]"),
    (det(bbox=(2, 3, 10, -1)), SIZE_RULE, "entry 2: [2, 3, 10, -1]"),
    (det(bbox=(12, 11, -10, 3)), SIZE_RULE, "entry 2: [12, 11, -10, 3]"),   # xyxy read as xywh, x2 < x1
    (det(bbox=(2, 3, 10)), BBOX_RULE, "entry 2: [2, 3, 10]"),
    (det(bbox=(2, 3, 10, 8, 1)), BBOX_RULE, "entry 2: [2, 3, 10, 8, 1]"),
    (det(bbox=(2, float("nan"), 10, 8)), BBOX_RULE, "entry 2: [2, nan, 10, 8]"),
    (det(bbox=(2, 3, float("inf"), 8)), BBOX_RULE, "entry 2: [2, 3, inf, 8]"),
    (dict(det(), bbox="2,3,10,8"), BBOX_RULE, "entry 2: '2,3,10,8'"),
    (dict(det(), bbox=[2, 3, "10", 8]), BBOX_RULE, "entry 2: [2, 3, '10', 8]"),
    ({k: v for k, v in det().items() if k != "score"}, KEYS_RULE, "entry 2 has no score"),
    ({"image_id": 1, "score": 0.5}, KEYS_RULE, "entry 2 has no category_id, bbox"),
    ({}, KEYS_RULE, "entry 2 has no image_id, category_id, bbox, score"),
    (5, OBJECT_RULE, "entry 2 is int"),
    ([1, 8, [2, 3, 10, 8], 0.9], OBJECT_RULE, "entry 2 is list"),
    (None, OBJECT_RULE, "entry 2 is NoneType"),
], ids=lambda v: repr(v)[:40] if not isinstance(v, dict) else None)
def test_each_entry_rule(bad, rule, example):
    message = error_of([det(score=0.5), det(image_id=2, category_id=CAR, bbox=(5, 5, 20, 10)), bad])
    assert message.splitlines()[0] == "preds.json: 1 problem(s)"
    assert f"  - 1 {rule}" in message and example in message
    if rule == SIZE_RULE:
        assert "not [x1, y1, x2, y2]" in message          # the hint for the usual cause


@pytest.mark.parametrize("bad", [det(bbox=(2, 3, 10 ** 400, 8)), det(score=10 ** 400)])
def test_huge_integer_is_refused_not_a_crash(bad):
    assert "entry 1" in error_of([det(score=0.5), bad])


def test_rule_counts_every_offender_but_shows_five_examples():
    entries = [det(score=0.5)] + [det(score=1.5 + k, bbox=(k, 0, 3, 3)) for k in range(8)]
    message = error_of(entries)
    assert f"  - 8 {SCORE_RULE}" in message
    assert "(e.g. entry 1: 1.5; entry 2: 2.5; entry 3: 3.5; entry 4: 4.5; entry 5: 5.5)" in message
    assert "entry 6" not in message


def test_empty_list_is_refused():
    message = error_of([])
    assert "the list is empty" in message


def test_top_level_not_a_list_is_refused(tmp_path):
    path = write_json(tmp_path / "preds.json", {"annotations": perfect()})
    with pytest.raises(OvbenchError, match="top level is dict, not a list") as info:
        load_detections(path)
    assert str(path) in str(info.value)


def test_duplicate_entries_are_refused():
    a, b = det(score=0.5), det(image_id=2, category_id=CAR)
    message = error_of([a, b, det(score=0.4), dict(a), b])
    assert "  - 2 duplicate entries (same image, category, box and score)" in message
    assert "entries 0 and 3" in message and "entries 1 and 4" in message
    # the same box with another score or category is not a duplicate
    check_detections([a, det(score=0.4), det(score=0.5, category_id=DOG)], IMAGES, CATEGORIES, CAP)


def test_masks_for_some_entries_names_the_entries_lacking_one():
    entries = perfect()
    del entries[1]["segmentation"], entries[3]["segmentation"]
    message = error_of(entries)
    assert "  - 2 entries lack a segmentation while others have one (give masks for all or none)" in message
    assert "entry 1" in message and "entry 3" in message


MASK_FORMAT_RULE = "masks are not compressed RLE {size: [h, w], counts: str}"
MALFORMED_RULE = "masks have malformed RLE counts (runs do not cover the image exactly)"
GOOD_COUNTS = encode(rect_mask(2, 3, 10, 8))


@pytest.mark.parametrize("segmentation, rule, example", [
    ([[2.0, 3.0, 12.0, 3.0, 12.0, 11.0, 2.0, 11.0]], "masks are polygons; give compressed RLE", "entry 1"),
    ({"size": [H, W], "counts": [0, 5, H * W - 5]}, MASK_FORMAT_RULE, "entry 1"),     # uncompressed RLE
    ({"size": [H, W]}, MASK_FORMAT_RULE, "entry 1"),
    ({"counts": GOOD_COUNTS}, MASK_FORMAT_RULE, "entry 1"),
    ("k45i0", MASK_FORMAT_RULE, "entry 1"),
    ({"size": [W, H], "counts": encode(rect_mask(2, 3, 10, 8, (W, H)))},            # transposed size
     "masks have a size different from their image's [height, width]", "entry 1: [40, 30] vs [30, 40] of image 1"),
    ({"size": [H, W, 1], "counts": GOOD_COUNTS}, "masks have a size that is not [height, width]", "entry 1"),
    ({"size": [H, W], "counts": GOOD_COUNTS[:-1]}, MALFORMED_RULE, "entry 1"),           # truncated
    ({"size": [H, W], "counts": GOOD_COUNTS[:-1] + "z"}, MALFORMED_RULE, "entry 1"),     # 'z' > 'o'
    ({"size": [H, W], "counts": "/" + GOOD_COUNTS[1:]}, MALFORMED_RULE, "entry 1"),      # '/' < '0'
    ({"size": [H, W], "counts": GOOD_COUNTS[:3] + " " + GOOD_COUNTS[3:]}, MALFORMED_RULE, "entry 1"),
    ({"size": [H, W], "counts": encode(rect_mask(2, 3, 10, 8, (H, W - 1)))}, MALFORMED_RULE, "entry 1"),  # 1170 px
    ({"size": [H, W], "counts": encode(np.ones((H, W + 1)))}, MALFORMED_RULE, "entry 1"),                # 1230 px
    ({"size": [H, W], "counts": GOOD_COUNTS + "1"}, MALFORMED_RULE, "entry 1"),                        # extra run
], ids=["polygon", "uncompressed", "no-counts", "no-size", "string", "transposed", "3d", "truncated",
        "char-z", "char-slash", "char-space", "short", "long", "extra-run"])
def test_each_mask_rule(segmentation, rule, example):
    entries = perfect()
    entries[1]["segmentation"] = segmentation
    message = error_of(entries)
    assert message.splitlines()[0] == "preds.json: 1 problem(s)"
    assert f"  - 1 {rule}" in message and example in message


def test_negative_run_with_the_right_total_is_refused():
    # runs [0, 5, -1, 1196]: the total is 1200 = H * W but one run is negative
    counts = encode_runs([0, 5, -1, H * W - 4])
    assert rle_run_totals([counts])[0][0] == H * W
    entries = perfect()
    entries[4]["segmentation"] = {"size": [H, W], "counts": counts}
    assert f"  - 1 {MALFORMED_RULE} (e.g. entry 4)" in error_of(entries)


def test_empty_counts_strings_are_refused_not_a_crash():
    entries = perfect()
    for e in entries:
        e["segmentation"]["counts"] = ""
    assert f"  - 5 {MALFORMED_RULE}" in error_of(entries)


@pytest.mark.parametrize("size", [H * W, None])
def test_non_list_mask_size_is_refused_not_a_crash(size):
    entries = perfect()
    entries[1]["segmentation"]["size"] = size
    assert "entry 1" in error_of(entries)


def test_float_mask_size_is_refused_before_scoring(data_root, tmp_path):
    entries = perfect()
    entries[1]["segmentation"]["size"] = [float(H), float(W)]
    path = write_json(tmp_path / "preds.json", entries)
    with pytest.raises(ValidationError, match="entry 1"):
        evaluate_detection_submission(PROTOCOL, path, data_root, progress=False)


def test_one_non_latin1_counts_string_flags_only_its_entry():
    entries = perfect()
    entries[2]["segmentation"]["counts"] = GOOD_COUNTS[:4] + "\u20ac"
    message = error_of(entries)
    assert f"  - 1 {MALFORMED_RULE} (e.g. entry 2)" in message


def test_one_image_over_the_cap_is_named_with_its_count():
    message = error_of(perfect(masks=False) + junk(2, CAP))
    assert "  - 1 images have more than the protocol's 300 detections per image" in message
    assert "image 2: 301" in message and "--truncate" in message
    assert "image 1" not in message and "image 3" not in message


def test_many_images_over_the_cap_count_all_name_five():
    images = {i: (H, W) for i in range(1, 10)}
    entries = [e for i in range(1, 8) for e in junk(i, CAP + i)] + junk(8, CAP) + junk(9, 3)
    message = error_of(entries, images=images)
    assert message.splitlines()[0] == "preds.json: 1 problem(s)"
    assert "  - 7 images have more than the protocol's 300 detections per image" in message
    assert "(e.g. image 1: 301, image 2: 302, image 3: 303, image 4: 304, image 5: 305)" in message
    for unnamed in ("image 6", "image 7", "image 8", "image 9"):
        assert unnamed not in message


# --------------------------------------------------------------------------- every problem in one error

def test_several_problems_are_reported_together():
    entries = perfect(masks=False) + [
        det(image_id=42), det(image_id=43, bbox=(0, 0, 1, 1)),     # 2 unknown images
        det(category_id=99, bbox=(0, 0, 2, 2)),                     # unknown category
        det(score=float("nan"), bbox=(0, 0, 3, 3)),                 # bad score
        det(bbox=(1, 1, 5, 0)),                                     # zero height
        "not an entry",                                             # not an object
        {"image_id": 1},                                            # missing keys
        perfect(masks=False)[2],                                    # duplicate of entry 2
    ] + junk(3, CAP)                                                # image 3 over the cap
    message = error_of(entries)
    assert message.splitlines()[0] == "preds.json: 8 problem(s)"
    for line in (f"  - 2 {IMAGE_RULE} (e.g. entry 5: 42; entry 6: 43)", f"  - 1 {CATEGORY_RULE} (e.g. entry 7: 99)",
                 f"  - 1 {SCORE_RULE} (e.g. entry 8: nan)", f"  - 1 {SIZE_RULE}", f"  - 1 {OBJECT_RULE} (e.g. entry 10 is str)",
                 f"  - 1 {KEYS_RULE} (e.g. entry 11 has no category_id, bbox, score)",
                 "  - 1 duplicate entries (same image, category, box and score) (e.g. entries 2 and 12)",
                 "  - 1 images have more than the protocol's 300 detections per image"):
        assert line in message, line
    assert "image 3: 302" in message


def test_one_entry_with_several_problems_reports_each():
    message = error_of([det(image_id=7, category_id=3, score=2.0, bbox=(0, 0, -1, 4))])
    assert message.splitlines()[0] == "preds.json: 4 problem(s)"
    lines = message.splitlines()
    for rule, example in ((IMAGE_RULE, "entry 0: 7"), (CATEGORY_RULE, "entry 0: 3"), (SCORE_RULE, "entry 0: 2.0"),
                          (SIZE_RULE, "entry 0: [0, 0, -1, 4]")):
        (line,) = [line for line in lines if line.startswith(f"  - 1 {rule}")]
        assert line.endswith(f"(e.g. {example})")


def test_mask_problems_are_reported_alongside_entry_problems():
    entries = perfect()
    entries[1]["segmentation"]["counts"] = GOOD_COUNTS + "z"
    entries[3]["image_id"] = 99
    message = error_of(entries)
    assert f"  - 1 {IMAGE_RULE} (e.g. entry 3: 99)" in message
    assert f"  - 1 {MALFORMED_RULE} (e.g. entry 1)" in message


# --------------------------------------------------------------------------- truncation

def test_top_per_image_keeps_the_best_ties_earlier_first_in_input_order():
    rng = np.random.default_rng(4)
    entries = [det(1, BALL, (k % 30, k // 30, 3, 3), 0.6) for k in range(296)]
    low = [det(1, CAR, (k, 0, 5, 5), 0.2) for k in range(9)]            # ties at the cut: keep the 4 earliest
    other = [det(2, CAR, (k, 1, 4, 4), s) for k, s in enumerate([0.1, 0.05, 0.0, 0.3])]
    positions = sorted(rng.choice(296 + 9 + 4, 9 + 4, replace=False).tolist())
    for pos, e in zip(positions, low + other):
        entries.insert(pos, e)
    kept = top_per_image(entries, CAP)
    dropped = [e for e in entries if not any(e is k for k in kept)]
    assert dropped == low[4:]
    assert kept == [e for e in entries if not any(e is d for d in low[4:])]      # input order
    checked = check_detections(entries, IMAGES, CATEGORIES, CAP, truncate=True)
    assert checked.entries == kept and checked.max_per_image == 300
    assert checked.truncation.to_dict() == {"cap": 300, "images": 1, "dropped": 5}
    # without --truncate the same list is refused
    assert "image 1: 305" in error_of(entries)


def test_top_per_image_small_cap_matches_a_stable_sort():
    rng = np.random.default_rng(5)
    entries = [det(int(rng.integers(1, 4)), BALL, (k, 0, 2, 2), float(rng.integers(0, 5)) / 4) for k in range(60)]
    kept = top_per_image(entries, 7)
    expected = []
    for image in (1, 2, 3):
        idx = [i for i, e in enumerate(entries) if e["image_id"] == image]
        expected += sorted(idx, key=lambda i: -entries[i]["score"])[:7]
    assert kept == [entries[i] for i in sorted(expected)]


@pytest.fixture
def over_cap_submission(tmp_path) -> Path:
    """Perfect boxes plus junk: image 1 has 2 + 302 = 304 detections, image 3 has 2 + 299 = 301."""
    entries = perfect(masks=False)
    entries[2:2] = junk(1, 302)
    entries += junk(3, 299, category_id=DOG)
    return write_json(tmp_path / "over.json", entries)


def test_cli_truncate_records_what_was_dropped(data_root, over_cap_submission, tmp_path, capsys):
    lb, out = tmp_path / "lb", tmp_path / "res.json"
    code = evaluate_cli("--predictions", str(over_cap_submission), "--data-root", str(data_root), "--truncate",
                        "--record", "--root", str(lb), "--out", str(out), "--method", "junky")
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    truncation = {"cap": 300, "images": 2, "dropped": 5}
    assert printed["evaluation"]["truncation"] == truncation
    assert printed["evaluation"]["skipped"] == {"segm": "the submission has no segmentation masks"}
    assert set(printed["metrics"]) == {"bbox"}
    assert printed["metrics"]["bbox"]["AP_all@300"] == pytest.approx(100.0)     # junk ranks below every hit
    (record_path,) = (lb / "results" / "synth-ovd").glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["evaluation"]["truncation"] == truncation and record["evaluation"]["backend"] == "faster-coco-eval"
    assert record["inputs"]["num_detections"] == 5 + 302 + 299 - 5
    assert record["method"] == "junky" and record["metrics"] == printed["metrics"]
    assert json.loads(out.read_text())["evaluation"]["truncation"] == truncation


def test_cli_without_truncate_refuses_and_writes_nothing(data_root, over_cap_submission, tmp_path, capsys):
    lb, out = tmp_path / "lb", tmp_path / "res.json"
    code = evaluate_cli("--predictions", str(over_cap_submission), "--data-root", str(data_root),
                        "--record", "--root", str(lb), "--out", str(out))
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(over_cap_submission) in captured.err and "2 images have more than" in captured.err
    assert "image 1: 304, image 3: 301" in captured.err and "--truncate" in captured.err
    assert not out.exists() and not lb.exists()


# --------------------------------------------------------------------------- reading files

def test_gzipped_submission_scores_like_the_plain_one(data_root, tmp_path):
    entries = perfect()
    entries[1]["bbox"] = [21, 11, 12, 15]                 # one box off by a pixel: AP is not trivially 100
    plain = write_json(tmp_path / "sub.json", entries)
    packed = tmp_path / "sub.json.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    loaded, digest = load_detections(packed)
    assert loaded == entries
    assert digest == hashlib.sha256(packed.read_bytes()).hexdigest() != load_detections(plain)[1]
    a = evaluate_detection_submission(PROTOCOL, plain, data_root, progress=False)
    b = evaluate_detection_submission(PROTOCOL, packed, data_root, progress=False)
    assert a.metrics == b.metrics and set(a.metrics) == {"bbox", "segm"}
    assert 0 < a.metrics["bbox"]["AP_all@100"] < 100


@pytest.mark.parametrize("name, content", [
    ("bad.json", b'[{"image_id": 1, "category_id": 8,'),
    ("bad.json", b"\xff\xfe not text"),
    ("bad.json.gz", gzip.compress(b'[{"image_id": 1}]')[:-12]),               # truncated gzip
    ("bad.json.gz", b"\x1f\x8b" + b"\x00" * 30),                               # gzip magic, garbage after
    ("bad.json.gz", gzip.compress(b'{"unfinished": ')),                          # gzip fine, JSON not
])
def test_corrupt_files_give_one_line_naming_the_file(tmp_path, name, content, capsys, data_root):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(OvbenchError) as info:
        load_detections(path)
    message = str(info.value)
    assert not isinstance(info.value, ValidationError)
    assert message.startswith(f"{path}: not a readable JSON (or gzipped JSON) file") and "\n" not in message
    assert evaluate_cli("--predictions", str(path), "--data-root", str(data_root)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err


def test_missing_predictions_file(data_root, tmp_path, capsys):
    missing = tmp_path / "nope.json.gz"
    with pytest.raises(OvbenchError, match="predictions file not found") as info:
        load_detections(missing)
    assert str(missing) in str(info.value)
    assert evaluate_cli("--predictions", str(missing), "--data-root", str(data_root)) == 2
    assert f"{missing}: predictions file not found" in capsys.readouterr().err


def test_missing_annotation_file_says_how_to_make_it(tmp_path, capsys):
    preds = write_json(tmp_path / "preds.json", perfect())
    empty = tmp_path / "empty"
    with pytest.raises(OvbenchError) as info:
        DetectionGroundTruth.load(PROTOCOL, empty)
    message = str(info.value)
    assert str(empty / "detection" / "instances_val.json") in message and "not found" in message
    assert "ovbench data synth" in message
    lb, out = tmp_path / "lb", tmp_path / "res.json"
    assert evaluate_cli("--predictions", str(preds), "--data-root", str(empty), "--record", "--root", str(lb),
                        "--out", str(out)) == 2
    assert "ovbench data synth" in capsys.readouterr().err
    assert not out.exists() and not lb.exists()


def test_corrupt_annotation_file(tmp_path):
    path = tmp_path / "detection" / "instances_val.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"images": [')
    with pytest.raises(OvbenchError, match="corrupt annotation JSON") as info:
        DetectionGroundTruth.load(PROTOCOL, tmp_path)
    assert str(path) in str(info.value)
    write_json(path, {"images": [], "annotations": []})
    with pytest.raises(OvbenchError, match="not a COCO-format annotation file"):
        DetectionGroundTruth.load(PROTOCOL, tmp_path)


# --------------------------------------------------------------------------- ground-truth categories

def test_ground_truth_loads(data_root):
    gt = DetectionGroundTruth.load(PROTOCOL, data_root)
    assert gt.images == IMAGES and gt.category_ids == CATEGORIES and len(gt.sha256) == 64


def _renamed(cats):
    return [dict(c, name="wolf") if c["id"] == DOG else c for c in cats]


@pytest.mark.parametrize("change, expected", [
    (lambda cats: [c for c in cats if c["id"] != 23], "1 protocol classes are missing: ids [23]"),
    (lambda cats: [c for c in cats if c["id"] not in (8, 14)], "2 protocol classes are missing: ids [8, 14]"),
    (lambda cats: cats + [{"id": 99, "name": "ghost"}], "1 categories are not in the protocol: ids [99]"),
    (_renamed, "category 14 is 'wolf', the protocol's class 14 is 'dog'"),
    (lambda cats: [dict(c, id=c["id"] - 8) for c in cats],                 # 0-based ids
     "8 categories are not in the protocol: ids [0, 1, 2, 3, 4, 5, 6, 7]"),
    (lambda cats: [dict(c, id=c["id"] - 8) for c in cats], "category 8 is 'bottle', the protocol's class 8 is 'ball'"),
], ids=["missing", "missing-two", "extra", "renamed", "shifted", "shifted-names"])
def test_check_categories_refuses_another_vocabulary(tmp_path, change, expected):
    cats = change(categories())
    with pytest.raises(ValidationError) as info:
        check_categories(PROTOCOL, cats, tmp_path / "x.json")
    assert expected in str(info.value) and "this is not synth-ovd's annotation file" in str(info.value)
    write_json(tmp_path / "detection" / "instances_val.json", gt_document(cats))
    with pytest.raises(ValidationError, match=expected.replace("[", r"\[").replace("]", r"\]")) as info:
        DetectionGroundTruth.load(PROTOCOL, tmp_path)
    assert str(info.value).startswith(str(tmp_path / "detection" / "instances_val.json"))


def test_check_categories_accepts_the_protocols_classes(tmp_path):
    check_categories(PROTOCOL, list(reversed(categories())), tmp_path / "x.json")


# --------------------------------------------------------------------------- online == offline

#: Imperfect detections per image: (category, x0, y0, x1, y1, score, mask rectangle x, y, w, h).
ONLINE = {
    1: [(BALL, 2, 3, 12, 11, 0.875, (2, 3, 10, 8)), (DOG, 22, 12, 33, 25, 0.75, (22, 12, 11, 13)),
        (CAR, 0, 20, 10, 30, 0.625, (0, 20, 10, 10))],
    2: [(CAR, 5, 5, 25, 15, 0.5, (5, 5, 20, 9))],
    3: [(CAT, 0, 0, 8, 6, 0.9375, (0, 0, 8, 6)), (DOG, 1, 10, 9, 20, 0.8125, (1, 10, 8, 10)),
        (DOG, 25, 12, 35, 26, 0.25, (25, 12, 10, 14))],
}


def test_detection_evaluator_with_tensors_matches_offline_scoring(data_root, tmp_path):
    torch = pytest.importorskip("torch")
    evaluator = DetectionEvaluator(PROTOCOL, data_root)
    offline = []
    for image_id, dets in ONLINE.items():
        boxes = torch.tensor([d[1:5] for d in dets], dtype=torch.float32)
        scores = torch.tensor([d[5] for d in dets], dtype=torch.float32)
        labels = torch.tensor([d[0] for d in dets], dtype=torch.int64)
        probabilities = np.full((len(dets), 1, H, W), 0.25, dtype=np.float32)
        for k, d in enumerate(dets):
            probabilities[k, 0] += 0.5 * rect_mask(*d[6])
            probabilities[k, 0, 0, W - 1] = 0.4375                  # below the threshold: not in the mask
        instances = {"boxes": boxes, "scores": scores, "labels": labels, "masks": torch.from_numpy(probabilities)}
        evaluator.process([{"image_id": image_id}], [{"instances": instances}])
        offline += [{"image_id": image_id, "category_id": c, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": s,
                     "segmentation": rle(rect_mask(*r))} for c, x0, y0, x1, y1, s, r in dets]
    assert evaluator.results == offline
    online = evaluator.evaluate()
    path = write_json(tmp_path / "offline.json", offline)
    scored = evaluate_detection_submission(PROTOCOL, path, data_root, progress=False)
    assert online == scored.metrics
    assert 0 < online["bbox"]["AP_all@100"] < 100 and 0 < online["segm"]["AP_novel@100"] < 100
    assert online["bbox"]["AP_all@100"] != online["segm"]["AP_all@100"]      # masks were really scored
    evaluator.reset()
    assert evaluator.results == []


# --------------------------------------------------------------------------- CLI output and backends

def test_cli_prints_nested_metrics_and_backend(data_root, tmp_path, capsys):
    preds = write_json(tmp_path / "perfect.json", perfect())
    assert evaluate_cli("--predictions", str(preds), "--data-root", str(data_root)) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["protocol"] == "synth-ovd" and printed["protocol_hash"] == PROTOCOL.hash
    assert set(printed["metrics"]) == {"bbox", "segm"}
    for iou in ("bbox", "segm"):
        metrics = printed["metrics"][iou]
        for cap in (100, 300):
            for name in ("AP", "AP50", "AP75"):
                for part in ("all", "base", "novel"):
                    assert metrics[f"{name}_{part}@{cap}"] == pytest.approx(100.0), (iou, name, part, cap)
        assert metrics["AP_per_class@100"]["14"] == pytest.approx(100.0)
        assert metrics["AP_per_class@100"]["9"] is None                    # no ground truth for "box"
    assert printed["evaluation"]["backend"] == "faster-coco-eval"
    assert printed["evaluation"]["truncation"] == {"cap": 300, "images": 0, "dropped": 0}
    assert printed["evaluation"]["skipped"] == {}


def test_cli_reference_backend_agrees(data_root, tmp_path, capsys):
    entries = perfect(masks=False)
    entries[1]["bbox"] = [22, 12, 11, 13]
    entries.append(det(3, DOG, (1, 10, 8, 10), 0.95))
    preds = write_json(tmp_path / "sub.json", entries)
    results = {}
    for backend in ("faster-coco-eval", "pycocotools"):
        assert evaluate_cli("--predictions", str(preds), "--data-root", str(data_root), "--backend", backend) == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["evaluation"]["backend"] == backend
        results[backend] = printed["metrics"]["bbox"]
    fast, ref = results["faster-coco-eval"], results["pycocotools"]
    assert 0 < fast["AP50_novel@100"] < 100
    for key in ("AP_all@100", "AP50_novel@100", "AP75_base@300", "APs_all@100"):
        assert fast[key] == pytest.approx(ref[key], abs=1e-9), key


def test_cli_lvis_backend_on_coco_protocol_is_refused(data_root, tmp_path, capsys):
    preds = write_json(tmp_path / "perfect.json", perfect())
    out = tmp_path / "res.json"
    assert evaluate_cli("--predictions", str(preds), "--data-root", str(data_root), "--backend", "lvis",
                        "--out", str(out)) == 2
    assert "backend 'lvis' cannot score a coco-style protocol" in capsys.readouterr().err
    assert not out.exists()
