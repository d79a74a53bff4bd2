"""``ovbench data prepare ade20k`` / ``ade20k-full`` on miniature ADEChallengeData2016 and ADE20K_2021_17_01.

The fixtures keep the releases' layouts and encodings: ADEChallengeData2016's ``images/<split>/<id>.jpg``,
``annotations/<split>/<id>.png`` (raw 0..150) and tab-separated ``objectInfo150.txt`` (with the quirks of
the copy in CSAILVision/sceneparsing: ``"bed "``, ``"22 \\t"``, television listed before television
receiver); ADE20K_2021_17_01's ``index_ade20k.pkl`` (filename / folder / objectnames lists and a numpy
array) and ``images/ADE/<split>/<scene>/<name>.jpg`` with ``<name>_seg.png`` where a pixel's object index
is ``R // 10 * 256 + G``, object index k naming ``objectnames[k - 1]`` (CSAILVision/ADE20K starter
notebook and sample images: car, auto, ... = 401, building, edifice = 312).
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovbench.data.label_io import decode_label_map
from ovbench.data.semseg import SemsegGroundTruth
from ovbench.errors import OvbenchError, ValidationError
from ovbench.prepare import ade20k, ade20k_full
from ovbench.protocols import get_protocol

# ------------------------------------------------------------------ ADEChallengeData2016 (ade-150)

ADE150_ANNOTATIONS = {
    ("validation", "ADE_val_00000001"): [[0, 1, 2, 3], [150, 150, 0, 8], [22, 90, 1, 1]],
    ("validation", "ADE_val_00000002"): [[5, 5, 5], [0, 0, 149]],
    ("training", "ADE_train_00000001"): [[1, 2], [3, 0]],
}


def make_ade150(root: Path, object_info: bool = True) -> Path:
    base = root / "ADEChallengeData2016"
    for (split, image_id), values in ADE150_ANNOTATIONS.items():
        arr = np.array(values, np.uint8)
        for folder in ("images", "annotations"):
            (base / folder / split).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (arr.shape[1], arr.shape[0]), (120, 80, 40)).save(base / "images" / split / f"{image_id}.jpg")
        Image.fromarray(arr, mode="L").save(base / "annotations" / split / f"{image_id}.png")
    if object_info:
        (base / "objectInfo150.txt").write_text(object_info_text())
    return root


def object_info_text() -> str:
    """objectInfo150.txt as shipped: tab-separated, with the quirks of the sceneparsing copy."""
    lines = ["Idx\tRatio\tTrain\tVal\tName"]
    for c in get_protocol("ade-150").classes:
        idx, name = f"{c.id + 1}", c.dataset_name
        if c.id + 1 == 8:
            name += " "                   # "bed "
        if c.id + 1 == 22:
            idx += " "                    # "22 \t0.0074..."
        if c.id + 1 == 90:                # television first, television receiver second
            items = name.split(", ")
            name = ", ".join([items[1], items[0], *items[2:]])
        lines.append(f"{idx}\t0.0010\t100\t10\t{name}")
    return "\n".join(lines) + "\n"


def outputs(root: Path) -> dict[str, bytes]:
    files = {p.relative_to(root): p for p in sorted(root.rglob("*")) if p.is_file()}
    return {str(rel): p.read_bytes() for rel, p in files.items()
            if "detectron2" in rel.parts[1] or rel.name == "ovbench_classes.json"}


def summary(report, path: str) -> dict[str, int]:
    return dict(next(f for f in report.files if f.path == path).counts)


def test_ade20k_label_maps(tmp_path: Path) -> None:
    report = ade20k.PREPARER.prepare(make_ade150(tmp_path), progress=False)
    out = tmp_path / "ADEChallengeData2016" / "annotations_detectron2"
    with Image.open(out / "validation" / "ADE_val_00000001.png") as im:
        assert im.mode == "L"
        got = np.asarray(im)
    np.testing.assert_array_equal(got, [[255, 0, 1, 2], [149, 149, 255, 7], [21, 89, 0, 0]])
    with Image.open(out / "training" / "ADE_train_00000001.png") as im:
        np.testing.assert_array_equal(np.asarray(im), [[0, 1], [2, 255]])
    assert summary(report, "ADEChallengeData2016/objectInfo150.txt") == {"classes": 150}
    val = summary(report, "ADEChallengeData2016/annotations_detectron2/validation")
    assert val == {"images": 2, "classes_present": 9, "min_class": 0, "max_class": 149, "written": 2, "unchanged": 0,
                   "stale_removed": 0}
    assert any("validation: 2 images, the release has 2000" in n for n in report.notes)
    assert any("training: 1 images, the release has 20210" in n for n in report.notes)
    # what protocol ade-150 reads
    gt = SemsegGroundTruth(get_protocol("ade-150"), tmp_path)
    assert gt.ids() == ["ADE_val_00000001", "ADE_val_00000002"]
    assert gt.image_path("ADE_val_00000002").is_file()


def test_ade20k_idempotent_and_without_object_info(tmp_path: Path) -> None:
    make_ade150(tmp_path, object_info=False)
    first = ade20k.PREPARER.prepare(tmp_path, progress=False)
    assert any("objectInfo150.txt not found" in n for n in first.notes)
    before = outputs(tmp_path)
    mtimes = {p: os.stat(tmp_path / p).st_mtime_ns for p in before}
    (tmp_path / "ADEChallengeData2016/annotations_detectron2/validation/ADE_val_09999999.png").write_bytes(b"old")
    again = ade20k.PREPARER.prepare(tmp_path, progress=False)
    assert outputs(tmp_path) == before
    assert {p: os.stat(tmp_path / p).st_mtime_ns for p in before} == mtimes
    val = summary(again, "ADEChallengeData2016/annotations_detectron2/validation")
    assert (val["written"], val["unchanged"], val["stale_removed"]) == (0, 2, 1)


def test_ade20k_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as e:
        ade20k.PREPARER.prepare(tmp_path, progress=False)
    assert len(e.value.problems) == 4
    assert all("ADEChallengeData2016.zip" in p for p in e.value.problems)
    assert any("annotations/validation not found" in p for p in e.value.problems)


def test_ade20k_unpaired_files(tmp_path: Path) -> None:
    make_ade150(tmp_path)
    (tmp_path / "ADEChallengeData2016/annotations/validation/ADE_val_00000002.png").unlink()
    Image.new("L", (2, 2)).save(tmp_path / "ADEChallengeData2016/annotations/training/ADE_train_00000009.png")
    with pytest.raises(ValidationError) as e:
        ade20k.PREPARER.prepare(tmp_path, progress=False)
    assert len(e.value.problems) == 2
    assert "ADE_val_00000002.png not found" in e.value.problems[0]
    assert "ADE_train_00000009.jpg not found" in e.value.problems[1]
    assert not outputs(tmp_path)


@pytest.mark.parametrize("defect, message", [
    ("value", "value 151 is no ADE-150 label"),
    ("size", "3x2, its image is 2x2"),
    ("corrupt", "not an ADEChallengeData2016 annotation"),
    ("names", "class 6 is 'tree', protocol ade-150 has 'ceiling' there"),
])
def test_ade20k_bad_input_writes_nothing(tmp_path: Path, defect: str, message: str) -> None:
    make_ade150(tmp_path)
    base = tmp_path / "ADEChallengeData2016"
    bad = base / "annotations" / "training" / "ADE_train_00000001.png"
    if defect == "value":
        Image.fromarray(np.array([[1, 151], [0, 0]], np.uint8)).save(bad)
    elif defect == "size":
        Image.fromarray(np.zeros((2, 3), np.uint8)).save(bad)
    elif defect == "corrupt":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    else:
        bad = base / "objectInfo150.txt"
        bad.write_text(object_info_text().replace("\t0.0010\t100\t10\tceiling\n", "\t0.0010\t100\t10\ttree\n"))
    with pytest.raises(OvbenchError) as e:
        ade20k.PREPARER.prepare(tmp_path, progress=False)
    assert str(e.value).startswith(f"{bad}: ") and message in str(e.value)
    assert "\n" not in str(e.value)
    assert not outputs(tmp_path)


# ------------------------------------------------------------------ ADE20K_2021_17_01 (ade-847)

#: Real object indices (1-based objectnames positions) and the ADE-847 class id each becomes.
WALL, BUILDING, PERSON, CAR, SHUTTERS, ADDING_MACHINE = 2978, 312, 1831, 401, 1541, 3148
CLASS_ID = {0: 65535, WALL: 0, BUILDING: 1, PERSON: 11, CAR: 14, SHUTTERS: 65535, ADDING_MACHINE: 846}
REAL_NAMES = {WALL: "wall", BUILDING: "building, edifice", CAR: "car, auto, automobile, machine, motorcar",
              PERSON: "person, individual, someone, somebody, mortal, soul", SHUTTERS: "metal shutters",
              ADDING_MACHINE: "adding machine, totalizer, totaliser"}
NUM_OBJECTS = 3200  # the real index has more; the table's largest index is 3156
FULL_IMAGES = {  # (split folder, scene folders, file stem): object indices
    ("validation", "urban/street", "ADE_val_00000001"): [[0, WALL, WALL], [BUILDING, CAR, SHUTTERS]],
    ("validation", "home_or_hotel/bedroom", "ADE_val_00000002"): [[PERSON, ADDING_MACHINE], [0, WALL]],
    ("training", "urban/street", "ADE_train_00016964"): [[BUILDING, CAR], [CAR, 0]],
}


def objectnames() -> list[str]:
    return [REAL_NAMES.get(k, f"object {k}, thing {k}") for k in range(1, NUM_OBJECTS + 1)]


def encode_seg(indices: np.ndarray) -> np.ndarray:
    """An ADE20K _seg.png of object indices: R = index // 256 * 10 (+ 0..9, dropped by R // 10), G = index % 256."""
    rgb = np.zeros((*indices.shape, 3), np.uint8)
    rgb[..., 0] = indices // 256 * 10 + indices % 7
    rgb[..., 1] = indices % 256
    rgb[..., 2] = 17  # instance channel
    return rgb


def make_ade_full(root: Path, training: bool = True) -> Path:
    base = root / "ADE20K_2021_17_01"
    filenames, folders = [], []
    for (split, scene, stem), values in FULL_IMAGES.items():
        if split == "training" and not training:
            continue
        folder = f"ADE20K_2021_17_01/images/ADE/{split}/{scene}"
        (root / folder).mkdir(parents=True, exist_ok=True)
        arr = np.array(values)
        Image.new("RGB", (arr.shape[1], arr.shape[0]), (10, 200, 30)).save(root / folder / f"{stem}.jpg")
        Image.fromarray(encode_seg(arr), mode="RGB").save(root / folder / f"{stem}_seg.png")
        filenames.append(f"{stem}.jpg")
        folders.append(folder)
    index = {"filename": filenames, "folder": folders, "objectnames": objectnames(), "scene": ["/street"] * 3,
             "objectPresence": np.zeros((NUM_OBJECTS, len(filenames)), np.uint8), "description": {"filename": "..."}}
    with open(base / "index_ade20k.pkl", "wb") as f:
        pickle.dump(index, f)
    return root


def seg_path(root: Path, key: tuple[str, str, str]) -> Path:
    split, scene, stem = key
    return root / f"ADE20K_2021_17_01/images/ADE/{split}/{scene}/{stem}_seg.png"


def read_tif(path: Path) -> np.ndarray:
    arr, mode = decode_label_map(path.read_bytes())  # ovbench's own label reader
    assert mode == "I;16" and arr.dtype == np.uint16
    return arr


def test_ade20k_full_labels_images_and_class_table(tmp_path: Path) -> None:
    report = ade20k_full.PREPARER.prepare(make_ade_full(tmp_path), progress=False)
    base = tmp_path / "ADE20K_2021_17_01"
    for (split, scene, stem), values in FULL_IMAGES.items():
        expected = np.vectorize(CLASS_ID.__getitem__)(np.array(values))
        np.testing.assert_array_equal(read_tif(base / "annotations_detectron2" / split / f"{stem}.tif"), expected)
        image = base / "images_detectron2" / split / f"{stem}.jpg"
        assert image.read_bytes() == (base / f"images/ADE/{split}/{scene}/{stem}.jpg").read_bytes()
    table = json.loads((base / "ovbench_classes.json").read_text())
    assert len(table) == 847
    assert table[1] == {"name": "building", "synonyms": ["edifice"], "dataset_name": "building, edifice"}
    assert table[14]["name"] == "car" and table[846]["synonyms"] == ["totalizer", "totaliser"]
    assert table[2] == {"name": "object 2420", "synonyms": ["thing 2420"], "dataset_name": "object 2420, thing 2420"}
    protocol = get_protocol("ade-847", data_root=tmp_path)
    classes = protocol.require_classes()
    assert len(classes) == 847 and classes[11].name == "person" and classes[11].partition == "base"
    assert classes[846].partition == "novel"
    gt = SemsegGroundTruth(protocol, tmp_path)
    assert gt.ids() == ["ADE_val_00000001", "ADE_val_00000002"] and gt.image_path("ADE_val_00000001").is_file()
    val = summary(report, "ADE20K_2021_17_01/annotations_detectron2/validation")
    assert val == {"images": 2, "classes_present": 5, "min_class": 0, "max_class": 846, "written": 2,
                   "unchanged": 0, "stale_removed": 0}
    assert summary(report, "ADE20K_2021_17_01/index_ade20k.pkl") == {"images": 3, "objectnames": NUM_OBJECTS}
    assert any("validation: 2 images, the release has 2000" in n for n in report.notes)


def test_ade20k_full_idempotent_validation_only(tmp_path: Path) -> None:
    make_ade_full(tmp_path, training=False)
    first = ade20k_full.PREPARER.prepare(tmp_path, progress=False)
    assert any("training/ not found" in n for n in first.notes)
    assert not (tmp_path / "ADE20K_2021_17_01/annotations_detectron2/training").exists()
    before = outputs(tmp_path)
    assert len(before) == 5  # class table, 2 images, 2 labels
    mtimes = {p: os.stat(tmp_path / p).st_mtime_ns for p in before}
    again = ade20k_full.PREPARER.prepare(tmp_path, progress=False)
    assert outputs(tmp_path) == before
    assert {p: os.stat(tmp_path / p).st_mtime_ns for p in before} == mtimes
    assert summary(again, "ADE20K_2021_17_01/ovbench_classes.json")["unchanged"] == 1
    images = summary(again, "ADE20K_2021_17_01/images_detectron2/validation")
    labels = summary(again, "ADE20K_2021_17_01/annotations_detectron2/validation")
    assert images["unchanged"] == 2 and (labels["written"], labels["unchanged"]) == (0, 2)


def test_ade20k_full_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as e:
        ade20k_full.PREPARER.prepare(tmp_path, progress=False)
    assert [p.split(" not found")[0] for p in e.value.problems] == [
        str(tmp_path / "ADE20K_2021_17_01/index_ade20k.pkl"), str(tmp_path / "ADE20K_2021_17_01/images/ADE/validation")]
    make_ade_full(tmp_path)
    seg_path(tmp_path, ("validation", "urban/street", "ADE_val_00000001")).unlink()
    with pytest.raises(ValidationError) as e:
        ade20k_full.PREPARER.prepare(tmp_path, progress=False)
    assert e.value.problems == [f"{seg_path(tmp_path, ('validation', 'urban/street', 'ADE_val_00000001'))} not found"]
    assert not outputs(tmp_path)


@pytest.mark.parametrize("defect, message", [
    ("corrupt", "cannot read it as a PNG"),
    ("size", "3x2, its image is 2x2"),
    ("value", f"object index {NUM_OBJECTS + 1} (R // 10 * 256 + G) is beyond the {NUM_OBJECTS} objectnames"),
    ("mode", "mode L; an ADE20K _seg.png is RGB"),
])
def test_ade20k_full_bad_seg_writes_nothing(tmp_path: Path, defect: str, message: str) -> None:
    make_ade_full(tmp_path)
    bad = seg_path(tmp_path, ("training", "urban/street", "ADE_train_00016964"))
    if defect == "corrupt":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    elif defect == "size":
        Image.fromarray(encode_seg(np.zeros((2, 3), np.int64)), mode="RGB").save(bad)
    elif defect == "value":
        Image.fromarray(encode_seg(np.array([[NUM_OBJECTS + 1, 0], [0, 0]])), mode="RGB").save(bad)
    else:
        Image.new("L", (2, 2)).save(bad)
    with pytest.raises(OvbenchError) as e:
        ade20k_full.PREPARER.prepare(tmp_path, progress=False)
    assert str(e.value).startswith(f"{bad}: ") and message in str(e.value)
    assert "\n" not in str(e.value)
    assert not outputs(tmp_path)


def test_ade20k_full_bad_index(tmp_path: Path) -> None:
    make_ade_full(tmp_path)
    path = tmp_path / "ADE20K_2021_17_01/index_ade20k.pkl"
    with open(path, "wb") as f:
        pickle.dump({"filename": ["ADE_val_00000001.jpg"], "folder": ["x"], "objectnames": ["wall"] * 100}, f)
    with pytest.raises(OvbenchError, match="100 objectnames, but ADE-847 uses object index 3156"):
        ade20k_full.PREPARER.prepare(tmp_path, progress=False)
    with open(path, "wb") as f:
        pickle.dump({"filename": [], "folder": []}, f)
    with pytest.raises(OvbenchError, match="no key 'objectnames'"):
        ade20k_full.PREPARER.prepare(tmp_path, progress=False)
    path.write_bytes(b"not a pickle")
    with pytest.raises(OvbenchError, match="cannot unpickle it"):
        ade20k_full.PREPARER.prepare(tmp_path, progress=False)
    assert not outputs(tmp_path)


def make_large_val_image(root: Path) -> Path:
    """Replace ADE_val_00000001 by a 744 x 800 px image (shorter side over 512); its image path. Its
    objects: wall, with car in source column 92, person in column 93, adding machine in rows 3 and 799,
    building in row 4, unlabelled row 798."""
    key = ("validation", "urban/street", "ADE_val_00000001")
    seg = np.full((800, 744), WALL)
    seg[:, 92], seg[:, 93] = CAR, PERSON
    seg[3], seg[4], seg[798], seg[799] = ADDING_MACHINE, BUILDING, 0, ADDING_MACHINE
    Image.fromarray(encode_seg(seg), mode="RGB").save(seg_path(root, key))
    yy, xx = np.mgrid[:800, :744]
    rgb = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    image = seg_path(root, key).with_name("ADE_val_00000001.jpg")
    Image.fromarray(rgb).save(image)
    return image


def test_ade20k_full_shrinks_like_maskformer(tmp_path: Path) -> None:
    source = make_large_val_image(make_ade_full(tmp_path, training=False))
    report = ade20k_full.PREPARER.prepare(tmp_path, progress=False)
    base = tmp_path / "ADE20K_2021_17_01"
    # 744 x 800 -> 512 x round(800 / 744 * 512) = round(550.54) = 551
    label = read_tif(base / "annotations_detectron2/validation/ADE_val_00000001.tif")
    assert label.shape == (551, 512)
    # columns: output x copies source floor(x * 744 / 512) as cv2 computes it: 63 -> 91, 65 -> 94, and
    # 64 -> 92 (cv2's double reciprocal lands just below 64 * 744 / 512 = 93), so car shows, person not
    # rows: output y copies floor(y * 800 / 551): 2 -> 2, 3 -> 4 (source row 3 skipped), 550 -> 798 (799 skipped)
    assert (label[0, 0], label[0, 63], label[0, 64], label[0, 65]) == (0, 0, 14, 0)
    assert (label[2, 64], label[3, 0], label[3, 64], label[550, 64]) == (14, 1, 1, 65535)
    assert np.flatnonzero(label[0] == 14).tolist() == [64]
    assert set(np.unique(label).tolist()) == {0, 1, 14, 65535}  # no person (11), no adding machine (846)
    image = base / "images_detectron2/validation/ADE_val_00000001.jpg"
    with Image.open(image) as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (512, 551))
    assert not os.path.samefile(image, source)
    small = base / "images_detectron2/validation/ADE_val_00000002.jpg"
    assert os.path.samefile(small, base / "images/ADE/validation/home_or_hotel/bedroom/ADE_val_00000002.jpg")
    images = summary(report, "ADE20K_2021_17_01/images_detectron2/validation")
    assert images == {"images": 2, "resized": 1, "linked": 1, "copied": 0, "written": 1, "unchanged": 0,
                      "stale_removed": 0}
    assert any("shorter side over 512 px shrunk to 512" in n and "validation 1 of 2" in n for n in report.notes)
    # a re-run rewrites nothing: the JPEG encoding is deterministic
    before = outputs(tmp_path)
    mtimes = {p: os.stat(tmp_path / p).st_mtime_ns for p in before}
    again = summary(ade20k_full.PREPARER.prepare(tmp_path, progress=False),
                    "ADE20K_2021_17_01/images_detectron2/validation")
    assert outputs(tmp_path) == before
    assert {p: os.stat(tmp_path / p).st_mtime_ns for p in before} == mtimes
    assert (again["resized"], again["written"], again["unchanged"]) == (1, 0, 2)


def test_ade20k_full_truncated_large_image_writes_nothing(tmp_path: Path) -> None:
    source = make_large_val_image(make_ade_full(tmp_path, training=False))
    source.write_bytes(source.read_bytes()[:2000])  # the header (size) still reads
    with pytest.raises(OvbenchError) as e:
        ade20k_full.PREPARER.prepare(tmp_path, progress=False)
    assert str(e.value).startswith(f"{source}: cannot decode the image")
    assert not outputs(tmp_path)


@pytest.mark.parametrize("size, expected", [
    ((2200, 1467), (768, 512)),   # 2200 / 1467 * 512 = 767.83
    ((683, 512), (683, 512)),     # shorter side 512: not over 512
    ((512, 400), (512, 400)),
    ((400, 900), (400, 900)),     # the shorter side (400) decides, not the longer
    ((600, 900), (512, 768)),     # portrait: 900 / 600 * 512 = 768
    ((744, 800), (512, 551)),     # 800 / 744 * 512 = 550.54
    ((1025, 1024), (512, 512)),   # 1025 / 1024 * 512 = 512.5 exactly: Python's round goes to the even 512
    ((1027, 1024), (514, 512)),   # 513.5 -> 514 (even)
    ((513, 513), (512, 512)),
])
def test_maskformer_size(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert ade20k_full.maskformer_size(*size) == expected


def test_nearest_and_bilinear_resampling() -> None:
    assert ade20k_full.nearest_indices(4, 2).tolist() == [0, 2]
    assert ade20k_full.nearest_indices(3, 2).tolist() == [0, 1]            # floor(1 * 1.5)
    assert ade20k_full.nearest_indices(2, 5).tolist() == [0, 0, 0, 1, 1]    # enlarging: floor(i * 0.4)
    assert ade20k_full.nearest_indices(1467, 512)[[1, 2, 3, 511]].tolist() == [2, 5, 8, 1464]  # i * 2.865
    assert ade20k_full.nearest_indices(2200, 768)[[96, 288]].tolist() == [275, 824]  # 288 * 2200 / 768 = 825
    label = np.arange(12, dtype=np.uint16).reshape(3, 4)
    np.testing.assert_array_equal(ade20k_full.resize_nearest(label, (2, 2)), [[0, 2], [4, 6]])
    # bilinear at cv2's positions (x + 0.5) * 9 / 3 - 0.5 = 3x + 1, no averaging over the 3-pixel footprint
    stripes = Image.fromarray(np.array([[0, 90] * 4 + [0]] * 2, np.uint8))
    assert np.asarray(ade20k_full.shrink_image(stripes, (3, 2))).tolist() == [[90, 0, 90]] * 2
    # 8 -> 4: source position 2x + 0.5, halfway between two pixels
    ramp = Image.fromarray(np.array([list(range(0, 80, 10))] * 2, np.uint8))
    assert np.asarray(ade20k_full.shrink_image(ramp, (4, 2))).tolist() == [[5, 25, 45, 65]] * 2


def test_object_id_table() -> None:
    ids = ade20k_full.load_object_ids()
    assert len(ids) == 847 and ids[:3] == [WALL, BUILDING, 2420] and ids[-1] == ADDING_MACHINE
    header = json.loads(ade20k_full.OBJECT_IDS.read_text())["source"]
    assert header["repository"] == "facebookresearch/MaskFormer" and len(header["commit"]) == 40
    assert ade20k_full.split_of("ADE_val_00000001.jpg") == "validation"
    assert ade20k_full.split_of("ADE_frame_00000001.jpg") == "training"
