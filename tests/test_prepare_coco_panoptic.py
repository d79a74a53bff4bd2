"""``ovbench data prepare coco-panoptic`` on a miniature COCO 2017 panoptic release.

The fixture keeps the official layout and encodings (panopticapi README, COCO's panoptic format):
``coco/annotations/panoptic_{train,val}2017.json`` with ``info``/``licenses``/``images``/
``annotations``/``categories`` (all 133 categories, ids and names from the protocol),
``coco/annotations/panoptic_{split}2017/<stem>.png`` RGB PNGs whose pixel segment id is
R + 256 G + 256^2 B (0 unlabelled), and ``coco/{split}2017/<stem>.jpg`` images with real COCO names.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovbench.errors import OvbenchError, ValidationError
from ovbench.prepare import coco_panoptic
from ovbench.protocols import get_protocol

PROTOCOL = get_protocol("coco-panoptic-133")
DATASET_IDS = PROTOCOL.definition["dataset_ids"]
NAMES = {DATASET_IDS[c.id]: c.dataset_name for c in PROTOCOL.require_classes()}
NOVEL = set(PROTOCOL.partition_rule["novel_dataset_ids"])

# COCO panoptic category ids -> contiguous ids (position in dataset_ids), written out by hand
PERSON, BICYCLE, CAR, COW, GIRAFFE, ROAD, WALL_STONE, SKY, GRASS = 1, 2, 3, 21, 25, 149, 175, 187, 193
CLASS = {PERSON: 0, BICYCLE: 1, CAR: 2, COW: 19, GIRAFFE: 23, ROAD: 100, WALL_STONE: 110, SKY: 119, GRASS: 125}
U = 255  # unlabelled

# segment ids that use all three channels: id = R + 256 G + 256^2 B
S1, S2, S3, S4, S5 = 67331, 5000000, 12345, 16777215, 258
# (split, stem, image id): (segment map, [(segment id, category id, iscrowd)])
IMAGES = {
    ("val", "000000000139", 139): (
        [[0, S1, S1, S2, S2, 0],
         [S3, S3, S1, S2, S4, S4],
         [S5, S5, S5, S5, S4, S4],
         [S5, S5, S5, S5, 0, 0]],
        [(S1, PERSON, 0), (S2, BICYCLE, 0), (S3, CAR, 1), (S4, WALL_STONE, 0), (S5, SKY, 0)]),
    ("val", "000000000285", 285): (
        [[S5] * 6, [S5] * 6, [S1] * 6, [0] * 6],
        [(S1, ROAD, 0), (S5, SKY, 0)]),
    ("val", "000000000632", 632): ([[0] * 6] * 4, []),
    ("train", "000000000009", 9): (
        [[S1, S1, S1, S5, S5, S5], [S1, S1, S1, S5, S5, S5], [S3] * 6, [S3] * 6],
        [(S1, PERSON, 0), (S3, ROAD, 0), (S5, SKY, 0)]),
    ("train", "000000000025", 25): (
        [[S2, S2, S2, S5, S5, S5], [S2, S2, S2, S5, S5, S5], [S5] * 6, [0] * 6],
        [(S2, GIRAFFE, 0), (S5, GRASS, 0)]),
    ("train", "000000000030", 30): (
        [[S4] * 6, [S4] * 6, [S4] * 6, [0] * 6],
        [(S4, COW, 0)]),
}
EXPECTED_VAL_139 = np.array([
    [U, 0, 0, 1, 1, U],
    [2, 2, 0, 1, 110, 110],
    [119, 119, 119, 119, 110, 110],
    [119, 119, 119, 119, U, U]], np.uint8)


def rgb(segment_map: list[list[int]]) -> np.ndarray:
    ids = np.array(segment_map, np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def panoptic_json(split: str) -> dict:
    images, annotations = [], []
    for (s, stem, image_id), (seg_map, segments) in IMAGES.items():
        if s != split:
            continue
        h, w = np.array(seg_map).shape
        images.append({"license": 1, "file_name": f"{stem}.jpg", "coco_url": f"http://x/{stem}.jpg",
                       "height": h, "width": w, "date_captured": "2013-11-14 11:18:45", "id": image_id})
        annotations.append({"segments_info": [
            {"id": sid, "category_id": cid, "iscrowd": crowd, "bbox": [0, 0, 1, 1],
             "area": int((np.array(seg_map) == sid).sum())} for sid, cid, crowd in segments],
            "file_name": f"{stem}.png", "image_id": image_id})
    categories = [{"supercategory": "s", "isthing": int(d <= 90), "id": d, "name": NAMES[d]} for d in DATASET_IDS]
    return {"info": {"description": "COCO 2018 Panoptic Dataset"}, "licenses": [{"id": 1, "name": "l"}],
            "images": images, "annotations": annotations, "categories": categories}


def make_coco(root: Path) -> Path:
    coco = root / "coco"
    for split in ("train", "val"):
        (coco / "annotations" / f"panoptic_{split}2017").mkdir(parents=True, exist_ok=True)
        (coco / f"{split}2017").mkdir(parents=True, exist_ok=True)
        (coco / "annotations" / f"panoptic_{split}2017.json").write_text(json.dumps(panoptic_json(split)))
    for (split, stem, _), (seg_map, _) in IMAGES.items():
        pixels = rgb(seg_map)
        Image.fromarray(pixels).save(coco / "annotations" / f"panoptic_{split}2017" / f"{stem}.png")
        Image.new("RGB", (pixels.shape[1], pixels.shape[0]), (90, 120, 200)).save(coco / f"{split}2017" / f"{stem}.jpg")
    return root


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    return make_coco(tmp_path)


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def label(root: Path, split: str, stem: str) -> np.ndarray:
    with Image.open(root / coco_panoptic.SEMANTIC_OUT[split] / f"{stem}.png") as im:
        assert im.mode == "L"
        return np.asarray(im)


def read(root: Path, path: str) -> dict:
    return json.loads((root / path).read_text())


def counts(report, path: str) -> dict[str, int]:
    return dict(next(f for f in report.files if f.path == path).counts)


# ---------------------------------------------------------------------------------------- tests


def test_outputs_are_where_the_protocol_reads_them():
    assert PROTOCOL.layout.label_path(Path("/d"), "000000000139") == \
        Path("/d") / coco_panoptic.SEMANTIC_OUT["val"] / "000000000139.png"
    assert PROTOCOL.layout.image_path(Path("/d"), "000000000139") == Path("/d/coco/val2017/000000000139.jpg")
    assert coco_panoptic.PREPARER.protocols == ("coco-panoptic-133",)
    assert {d: DATASET_IDS.index(d) for d in CLASS} == CLASS
    assert NOVEL >= {BICYCLE, COW, GIRAFFE, WALL_STONE} and not NOVEL & {PERSON, CAR, ROAD, SKY, GRASS}


def test_label_maps_hand_checked(coco_root):
    report = coco_panoptic.PREPARER.prepare(coco_root, progress=False)
    np.testing.assert_array_equal(label(coco_root, "val", "000000000139"), EXPECTED_VAL_139)
    np.testing.assert_array_equal(label(coco_root, "val", "000000000285"),
                                  np.array([[119] * 6, [119] * 6, [100] * 6, [U] * 6], np.uint8))
    np.testing.assert_array_equal(label(coco_root, "val", "000000000632"), np.full((4, 6), U, np.uint8))
    # train keeps novel classes (giraffe 23, cow 19): data.classes: base voids them at load time
    np.testing.assert_array_equal(label(coco_root, "train", "000000000025"),
                                  np.array([[23, 23, 23, 125, 125, 125], [23, 23, 23, 125, 125, 125],
                                            [125] * 6, [U] * 6], np.uint8))
    np.testing.assert_array_equal(label(coco_root, "train", "000000000030"),
                                  np.array([[19] * 6] * 3 + [[U] * 6], np.uint8))
    assert counts(report, coco_panoptic.JSON_IN["val"]) == {"images": 3, "segments": 7, "novel_segments": 2,
                                                            "crowd_segments": 1}
    assert counts(report, coco_panoptic.JSON_IN["train"]) == {"images": 3, "segments": 6, "novel_segments": 2,
                                                              "crowd_segments": 0}
    assert counts(report, coco_panoptic.SEMANTIC_OUT["val"]) == {
        "images": 3, "classes_present": 6, "min_class": 0, "max_class": 119, "segments_without_pixels": 0,
        "written": 3, "unchanged": 0, "stale_removed": 0}
    assert counts(report, coco_panoptic.SEMANTIC_OUT["train"])["classes_present"] == 6
    assert any("data.classes: base" in n for n in report.notes)
    assert any("1 in panoptic_train2017_base_ignore.json, 0 in panoptic_train2017_base_delete.json, "
               "1 in panoptic_val2017_base.json, 2 in panoptic_val2017_novel.json" in n for n in report.notes)


def test_gkc_split_files(coco_root):
    report = coco_panoptic.PREPARER.prepare(coco_root, progress=False)
    segments = {}
    for path in (coco_panoptic.BASE_IGNORE_OUT, coco_panoptic.BASE_DELETE_OUT, coco_panoptic.VAL_BASE_OUT,
                 coco_panoptic.VAL_NOVEL_OUT):
        doc = read(coco_root, path)
        assert doc["info"] == {"description": "COCO 2018 Panoptic Dataset"} and doc["licenses"][0]["id"] == 1
        keep = NOVEL if path == coco_panoptic.VAL_NOVEL_OUT else set(DATASET_IDS) - NOVEL
        assert [c["id"] for c in doc["categories"]] == [d for d in DATASET_IDS if d in keep]
        assert [im["id"] for im in doc["images"]] == [a["image_id"] for a in doc["annotations"]]
        segments[path] = {a["image_id"]: [(s["id"], s["category_id"]) for s in a["segments_info"]]
                          for a in doc["annotations"]}
    assert segments[coco_panoptic.BASE_IGNORE_OUT] == {9: [(S1, PERSON), (S3, ROAD), (S5, SKY)],
                                                       25: [(S5, GRASS)], 30: []}
    assert segments[coco_panoptic.BASE_DELETE_OUT] == {9: [(S1, PERSON), (S3, ROAD), (S5, SKY)]}
    assert segments[coco_panoptic.VAL_BASE_OUT] == {139: [(S1, PERSON), (S3, CAR), (S5, SKY)],
                                                    285: [(S1, ROAD), (S5, SKY)], 632: []}
    assert segments[coco_panoptic.VAL_NOVEL_OUT] == {139: [(S2, BICYCLE), (S4, WALL_STONE)], 285: [], 632: []}
    kept = read(coco_root, coco_panoptic.VAL_BASE_OUT)["annotations"][0]["segments_info"][1]
    assert kept == {"id": S3, "category_id": CAR, "iscrowd": 1, "bbox": [0, 0, 1, 1], "area": 2}
    assert counts(report, coco_panoptic.BASE_DELETE_OUT) == {"images": 1, "images_dropped": 2, "categories": 115,
                                                             "segments": 3, "images_without_segments": 0}
    assert counts(report, coco_panoptic.VAL_NOVEL_OUT) == {"images": 3, "categories": 18, "segments": 2,
                                                           "images_without_segments": 2}
    assert read(coco_root, coco_panoptic.JSON_IN["train"]) == panoptic_json("train")  # inputs untouched


def test_rerun_is_idempotent_and_leaves_unchanged_label_maps_alone(coco_root):
    coco_panoptic.PREPARER.prepare(coco_root, progress=False)
    first = files_under(coco_root)
    out = coco_root / coco_panoptic.SEMANTIC_OUT["val"]
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "000000999999.png").write_bytes(b"stale")
    report = coco_panoptic.PREPARER.prepare(coco_root, progress=False)
    assert files_under(coco_root) == first
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert counts(report, coco_panoptic.SEMANTIC_OUT["val"])["written"] == 0
    assert counts(report, coco_panoptic.SEMANTIC_OUT["val"])["unchanged"] == 3
    assert counts(report, coco_panoptic.SEMANTIC_OUT["val"])["stale_removed"] == 1
    assert not [p for p in (coco_root / "coco").rglob(".*")]  # no staging folder or temporary file left


def test_process_pool_gives_the_same_files(tmp_path, monkeypatch):
    serial, pooled = make_coco(tmp_path / "serial"), make_coco(tmp_path / "pooled")
    coco_panoptic.PREPARER.prepare(serial, progress=False)
    contexts = []
    get_context = coco_panoptic.multiprocessing.get_context
    monkeypatch.setattr(coco_panoptic.multiprocessing, "get_context", lambda m: contexts.append(m) or get_context(m))
    monkeypatch.setattr(coco_panoptic, "PARALLEL_MIN_IMAGES", 1)
    coco_panoptic.PREPARER.prepare(pooled, progress=False)
    assert files_under(pooled) == files_under(serial)
    assert contexts == ["spawn", "spawn"] or len(os.sched_getaffinity(0)) < 2
    path = _corrupt_png(pooled)  # a worker's error reaches the caller as the same one-line error
    before = files_under(pooled)
    with pytest.raises(OvbenchError, match="cannot be decoded as a PNG") as e:
        coco_panoptic.PREPARER.prepare(pooled, progress=False)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
    assert files_under(pooled) == before


def test_missing_inputs_listed_with_their_source(tmp_path):
    with pytest.raises(ValidationError) as e:
        coco_panoptic.PREPARER.prepare(tmp_path, progress=False)
    assert len(e.value.problems) == 6
    message = str(e.value)
    assert "https://cocodataset.org/#download" in message and "panoptic_annotations_trainval2017.zip" in message
    assert "coco/annotations/panoptic_val2017.zip (inside panoptic_annotations_trainval2017.zip" in message
    assert "unzip it inside" in message
    assert f"{tmp_path / 'coco/annotations/panoptic_train2017'} not found" in message
    assert list(tmp_path.iterdir()) == []


def test_missing_png_and_image_all_listed(coco_root):
    (coco_root / "coco/annotations/panoptic_val2017/000000000285.png").unlink()
    (coco_root / "coco/val2017/000000000632.jpg").unlink()
    before = files_under(coco_root)
    with pytest.raises(ValidationError) as e:
        coco_panoptic.PREPARER.prepare(coco_root, progress=False)
    assert len(e.value.problems) == 2
    assert "000000000285.png not found (panoptic PNG)" in e.value.problems[0]
    assert "PNGs from coco/annotations/panoptic_val2017.zip" in e.value.fix and "zips/val2017.zip" in e.value.fix
    assert files_under(coco_root) == before


def _corrupt_png(root: Path) -> Path:
    path = root / "coco/annotations/panoptic_train2017/000000000030.png"
    path.write_bytes(path.read_bytes()[:40])
    return path


def _png_size_mismatch(root: Path) -> Path:
    path = root / "coco/annotations/panoptic_val2017/000000000285.png"
    Image.fromarray(rgb([[S5] * 7] * 4)).save(path)
    return path


def _unlisted_segment(root: Path) -> Path:
    path = root / "coco/annotations/panoptic_train2017/000000000009.png"
    seg_map = [row[:] for row in IMAGES[("train", "000000000009", 9)][0]]
    seg_map[3][5] = 4242  # a segment that segments_info does not list
    Image.fromarray(rgb(seg_map)).save(path)
    return path


def _unknown_category(root: Path) -> Path:
    path = root / coco_panoptic.JSON_IN["val"]
    doc = panoptic_json("val")
    doc["annotations"][1]["segments_info"][0]["category_id"] = 12  # no COCO panoptic category
    path.write_text(json.dumps(doc))
    return path


def _image_size_mismatch(root: Path) -> Path:
    path = root / "coco/val2017/000000000139.jpg"
    Image.new("RGB", (6, 5)).save(path)
    return path


@pytest.mark.parametrize("damage, message", [
    (_corrupt_png, "cannot be decoded as a PNG"),
    (_png_size_mismatch, "7x4, the JSON gives image 285 as 6x4"),
    (_unlisted_segment, "1 pixels hold segment ids that the segments_info of image 9 in .* lacks .*first 4242 = "
                        "RGB 146,16,0"),
    (_unknown_category, "annotation 000000000285.png \\(image 285\\): segment 67331 has category_id 12"),
    (_image_size_mismatch, "6x5, the JSON gives image 139 as 6x4"),
])
def test_bad_input_one_line_error_naming_the_file_nothing_written(coco_root, damage, message):
    path = damage(coco_root)
    before = files_under(coco_root)
    with pytest.raises(OvbenchError, match=message) as e:
        coco_panoptic.PREPARER.prepare(coco_root, progress=False)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
    assert files_under(coco_root) == before
    assert not [p for p in (coco_root / "coco").rglob(".*")]


def test_bad_input_after_a_successful_run_leaves_the_outputs_as_they_were(coco_root):
    coco_panoptic.PREPARER.prepare(coco_root, progress=False)
    seg_map = [row[:] for row in IMAGES[("val", "000000000285", 285)][0]]
    seg_map[0][0] = S1  # a changed val label map, staged, then the corrupt train PNG stops the run
    Image.fromarray(rgb(seg_map)).save(coco_root / "coco/annotations/panoptic_val2017/000000000285.png")
    _corrupt_png(coco_root)
    before = files_under(coco_root)
    with pytest.raises(OvbenchError, match="000000000030.png: cannot be decoded"):
        coco_panoptic.PREPARER.prepare(coco_root, progress=False)
    assert files_under(coco_root) == before


def test_categories_must_be_the_protocols(coco_root):
    path = coco_root / coco_panoptic.JSON_IN["train"]
    doc = panoptic_json("train")
    doc["categories"] = [c for c in doc["categories"] if c["id"] not in (BICYCLE, SKY)]
    doc["categories"].append({"supercategory": "s", "isthing": 0, "id": 183, "name": "other"})
    path.write_text(json.dumps(doc))
    with pytest.raises(OvbenchError, match="missing ids 2, 187; extra ids 183") as e:
        coco_panoptic.PREPARER.prepare(coco_root, progress=False)
    assert str(e.value).startswith(str(path))
    doc = panoptic_json("train")
    doc["categories"][0]["name"] = "people"
    path.write_text(json.dumps(doc))
    with pytest.raises(OvbenchError, match="category 1 is named 'people', COCO panoptic's 1 is 'person'"):
        coco_panoptic.PREPARER.prepare(coco_root, progress=False)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["annotations"][0].pop("segments_info"), "annotation 0 lacks a file_name"),
    (lambda d: d["annotations"].pop(), "1 image\\(s\\) have no annotation \\(first: image 632\\)"),
    (lambda d: d["annotations"][0].update(file_name="000000000285.png"), "does not match the image"),
    (lambda d: d["annotations"][0]["segments_info"][1].update(id=S1), "segment id 67331 is repeated"),
    (lambda d: d["images"][0].update(file_name="../x.jpg"), "image entry 0 lacks"),
])
def test_malformed_json_names_the_file(coco_root, edit, message):
    path = coco_root / coco_panoptic.JSON_IN["val"]
    doc = panoptic_json("val")
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(OvbenchError, match=message) as e:
        coco_panoptic.PREPARER.prepare(coco_root, progress=False)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_semantic_label_counts_pixels_and_reports_unlisted_ids():
    seg = np.array([[0, 7, 7], [300000, 9, 5]], np.uint32)
    label_map, pixels, unlisted = coco_panoptic.semantic_label(seg, (9, 7, 11), (4, 2, 3))
    np.testing.assert_array_equal(label_map, np.array([[U, 2, 2], [U, 4, U]], np.uint8))
    assert pixels.tolist() == [1, 2, 0]
    assert unlisted.tolist() == [5, 300000]
