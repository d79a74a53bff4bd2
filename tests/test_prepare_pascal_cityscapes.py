"""``ovbench data prepare`` for pascal-context, pascal-voc and cityscapes on miniature official layouts.

The fixtures keep the real file names and encodings: VOC2010/VOC2012 ``JPEGImages/<id>.jpg`` and
``ImageSets`` lists with real ids (2008_000002, 2007_000033); PASCAL-Context ``trainval/<id>.mat``
written by scipy with a uint16 ``LabelMap`` of labels.txt ids and a 459-line ``labels.txt``
(``<id>: <name>``; the 59 names of pascal-context-59 and a few other real ones, placeholders
elsewhere); VOC ``SegmentationClass`` palette PNGs with the VOC colour map; Cityscapes
``<city>/<city>_<seq>_<frame>_leftImg8bit.png`` / ``_gtFine_labelIds.png`` (plus the color,
instanceIds and polygons files the download also holds).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.io
from PIL import Image

from ovbench.data.label_io import decode_label_map
from ovbench.data.semseg import SemsegGroundTruth
from ovbench.errors import OvbenchError, ValidationError
from ovbench.prepare import cityscapes, pascal_context, pascal_voc
from ovbench.prepare.base import Preparer
from ovbench.protocols import get_protocol

# ---------------------------------------------------------------- fixtures

#: labels.txt names other than the 59 of pascal-context-59 that the fixture spells as the release does.
OTHER_LABELS = {1: "accordion", 3: "air conditioner", 382: "stone", 459: "wool"}
PC_VAL = {  # LabelMap of each val image: labels.txt ids, 0 = unlabelled
    "2008_000002": [[0, 2, 2, 1, 459, 458],
                    [284, 284, 326, 326, 382, 0],
                    [308, 427, 9, 18, 3, 0],
                    [0, 0, 0, 0, 0, 0]],
    "2008_000003": [[0, 0, 2, 0, 0],
                    [0, 0, 0, 0, 0],
                    [0, 0, 0, 0, 0]],
}
PC_TRAIN_ID = "2008_000008"  # annotated, in VOC2010 Main train: never prepared
#: Expected pascal-context-59 class of each labels.txt id used above (position in the protocol's dataset_ids).
PC59_OF = {0: 255, 1: 255, 2: 0, 3: 255, 9: 1, 18: 2, 284: 36, 308: 39, 326: 41, 382: 255, 427: 54, 458: 58,
           459: 255}

VOC_VAL = {  # SegmentationClass palette indices: 0 background, 1..20 classes, 255 void border
    "2007_000033": [[0, 0, 1, 1, 255],
                    [0, 15, 15, 255, 20],
                    [255, 255, 255, 255, 20]],
    "2007_000042": [[7, 7], [255, 0]],
}

CS_VAL = {  # labelIds: 0 unlabeled, 1 ego vehicle, 7 road, 8 sidewalk, 9 parking, 11 building, 23 sky, ...
    "frankfurt/frankfurt_000000_000294": [[0, 1, 7, 7, 8, 9, 11, 23],
                                          [24, 26, 26, 31, 33, 17, 7, 7],
                                          [7, 7, 7, 7, 7, 7, 7, 7],
                                          [1, 1, 1, 1, 1, 1, 1, 1]],
    "frankfurt/frankfurt_000000_000576": [[7] * 8, [8] * 8, [23] * 8, [0] * 8],
    "lindau/lindau_000000_000019": [[33] * 8, [32] * 8, [28] * 8, [4] * 8],
}
CS_TRAIN = {"aachen/aachen_000000_000019": [[7] * 8, [26] * 8, [23] * 8, [0] * 8]}
#: Expected train id of each Cityscapes label id (cityscapesScripts helpers/labels.py).
TRAIN_ID = {0: 255, 1: 255, 4: 255, 7: 0, 8: 1, 9: 255, 11: 2, 17: 5, 23: 10, 24: 11, 26: 13, 28: 15, 31: 16,
            32: 17, 33: 18}


def labels_txt() -> str:
    names = {i: f"placeholder label {i}" for i in range(1, 460)}
    names.update(OTHER_LABELS)
    pc59 = get_protocol("pascal-context-59")
    names.update(zip(pc59.definition["dataset_ids"], (c.dataset_name for c in pc59.require_classes())))
    return "".join(f"{i}: {names[i]}\n" for i in range(1, 460))


def save_jpeg(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 200)).save(path, format="JPEG")


def save_mat(path: Path, label_map: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"LabelMap": label_map.astype(np.uint16)}, do_compression=True)


def make_pascal_context(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2010"
    for image_id, values in {**PC_VAL, PC_TRAIN_ID: [[2, 2], [0, 0]]}.items():
        arr = np.array(values)
        save_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", arr.shape[1], arr.shape[0])
        save_mat(root / "pascal-context" / "trainval" / f"{image_id}.mat", arr)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "val.txt").write_text("".join(f"{i}\n" for i in PC_VAL))
    (voc / "ImageSets" / "Main" / "train.txt").write_text(f"{PC_TRAIN_ID}\n")
    (root / "pascal-context" / "labels.txt").write_text(labels_txt())
    return root


def voc_palette() -> list[int]:
    """The VOC colour map: bits of the index spread over the high bits of R, G, B."""
    palette = []
    for i in range(256):
        rgb, c = [0, 0, 0], i
        for bit in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - bit)
            c >>= 3
        palette += rgb
    return palette


def save_palette_png(path: Path, indices: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.frombytes("P", (indices.shape[1], indices.shape[0]), indices.astype(np.uint8).tobytes())
    im.putpalette(voc_palette())
    im.save(path)


def make_pascal_voc(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for image_id, values in VOC_VAL.items():
        arr = np.array(values)
        save_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", arr.shape[1], arr.shape[0])
        save_palette_png(voc / "SegmentationClass" / f"{image_id}.png", arr)
    save_jpeg(voc / "JPEGImages" / "2007_000032.jpg", 4, 3)  # a train image
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{i}\n" for i in VOC_VAL))
    return root


def add_cityscapes_split(root: Path, split: str, frames: dict[str, list[list[int]]]) -> None:
    for frame, values in frames.items():
        arr = np.array(values, np.uint8)
        image = root / "cityscapes" / "leftImg8bit" / split / f"{frame}_leftImg8bit.png"
        gt = root / "cityscapes" / "gtFine" / split / f"{frame}_gtFine_labelIds.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        gt.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (arr.shape[1], arr.shape[0]), (70, 130, 180)).save(image)
        Image.fromarray(arr).save(gt)
        Image.new("RGB", (arr.shape[1], arr.shape[0]), (128, 64, 128)).save(
            gt.with_name(gt.name.replace("labelIds", "color")))
        Image.fromarray(arr.astype(np.uint16) * 1000).save(gt.with_name(gt.name.replace("labelIds", "instanceIds")))
        gt.with_name(gt.name.replace("labelIds.png", "polygons.json")).write_text(
            json.dumps({"imgHeight": arr.shape[0], "imgWidth": arr.shape[1], "objects": []}))


def make_cityscapes(root: Path, train: bool = True) -> Path:
    add_cityscapes_split(root, "val", CS_VAL)
    if train:
        add_cityscapes_split(root, "train", CS_TRAIN)
    return root


def mapped(values: list[list[int]], table: dict[int, int]) -> np.ndarray:
    """Expected label map, written out independently of the preparers' tables."""
    return np.vectorize(table.__getitem__)(np.array(values))


def files_under(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def read(path: Path, mode: str) -> np.ndarray:
    arr, found = decode_label_map(path.read_bytes())  # the reader the evaluator uses
    assert found == mode
    return arr


def counts(report, path: str) -> dict[str, int]:
    return next(dict(f.counts) for f in report.files if f.path == path)


@pytest.fixture
def pc_root(tmp_path: Path) -> Path:
    return make_pascal_context(tmp_path)


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    return make_pascal_voc(tmp_path)


@pytest.fixture
def cs_root(tmp_path: Path) -> Path:
    return make_cityscapes(tmp_path)


def assert_fails_writing_nothing(root: Path, preparer: Preparer, match: str, path: Path) -> None:
    before = files_under(root)
    with pytest.raises(OvbenchError, match=match) as e:
        preparer.prepare(root, progress=False)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert files_under(root) == before


# ---------------------------------------------------------------- layouts


def test_outputs_are_the_protocol_layouts():
    pc59, pc459 = get_protocol("pascal-context-59"), get_protocol("pascal-context-459")
    assert pc59.layout.images == pc459.layout.images == pascal_context.IMAGES_OUT + "/{id}.jpg"
    assert pc459.layout.labels == pascal_context.CTX459_OUT + "/{id}.tif"
    assert pc59.layout.labels == pascal_context.CTX59_OUT + "/{id}.png"
    assert pc459.class_table["file"] == pascal_context.CLASS_TABLE_OUT
    assert (pc459.ignore_label, pc59.ignore_label) == (pascal_context.IGNORE_459, pascal_context.IGNORE_59)
    voc = get_protocol("pascal-voc-20")
    assert (voc.layout.images, voc.layout.labels) == (pascal_voc.IMAGES_OUT + "/{id}.jpg",
                                                      pascal_voc.LABELS_OUT + "/{id}.png")
    cs = get_protocol("cityscapes-19")
    assert cs.layout.labels == f"{cityscapes.GT}/val/{{id}}{cityscapes.TRAIN_IDS_SUFFIX}"
    assert cs.layout.images == f"{cityscapes.IMAGES}/val/{{id}}{cityscapes.IMAGE_SUFFIX}"
    assert len(cs.definition["dataset_ids"]) == 19
    assert {k: TRAIN_ID[k] for k in TRAIN_ID if TRAIN_ID[k] != 255} == {
        cs.definition["dataset_ids"][t]: t for t in (0, 1, 2, 5, 10, 11, 13, 15, 16, 17, 18)}


# ---------------------------------------------------------------- pascal-context


def test_pascal_context_outputs(pc_root):
    report = pascal_context.PREPARER.prepare(pc_root, progress=False)
    for image_id, values in PC_VAL.items():
        ctx459 = read(pc_root / pascal_context.CTX459_OUT / f"{image_id}.tif", "I;16")
        assert ctx459.dtype == np.uint16
        np.testing.assert_array_equal(ctx459, np.where(np.array(values) == 0, 65535, np.array(values) - 1))
        ctx59 = read(pc_root / pascal_context.CTX59_OUT / f"{image_id}.png", "L")
        np.testing.assert_array_equal(ctx59, mapped(values, PC59_OF))
        image = pc_root / pascal_context.IMAGES_OUT / f"{image_id}.jpg"
        assert os.path.samefile(image, pc_root / pascal_context.IMAGES / f"{image_id}.jpg")  # a hard link
    np.testing.assert_array_equal(read(pc_root / pascal_context.CTX459_OUT / "2008_000002.tif", "I;16")[0],
                                  [65535, 1, 1, 0, 458, 457])
    np.testing.assert_array_equal(read(pc_root / pascal_context.CTX59_OUT / "2008_000002.png", "L")[:3], [
        [255, 0, 0, 255, 255, 58], [36, 36, 41, 41, 255, 255], [39, 54, 1, 2, 255, 255]])
    assert not list(pc_root.glob(f"pascal_ctx_d2/**/{PC_TRAIN_ID}.*"))

    for pid in ("pascal-context-59", "pascal-context-459"):  # what the evaluator reads
        gt = SemsegGroundTruth(get_protocol(pid), pc_root)
        assert gt.ids() == sorted(PC_VAL) and all(gt.image_path(i).is_file() for i in gt.ids())

    assert counts(report, pascal_context.CTX459_OUT) == {
        "images": 2, "classes_present": 12, "min_class": 0, "max_class": 458, "written": 2, "unchanged": 0,
        "stale_removed": 0}
    assert counts(report, pascal_context.CTX59_OUT) == {
        "images": 2, "classes_present": 8, "min_class": 0, "max_class": 58, "written": 2, "unchanged": 0,
        "stale_removed": 0}
    assert counts(report, pascal_context.IMAGES_OUT) == {"images": 2, "linked": 2, "copied": 0, "unchanged": 0,
                                                         "stale_removed": 0}
    assert counts(report, pascal_context.LABELS_TXT) == {"labels": 459, "pc59_names": 59}
    assert "val.txt lists 2 images, the official list 5105" in report.notes[0]


def test_pascal_context_class_table_loads_as_the_459_protocol(pc_root):
    pascal_context.PREPARER.prepare(pc_root, progress=False)
    table = json.loads((pc_root / pascal_context.CLASS_TABLE_OUT).read_text())
    assert len(table) == 459 and all(list(row) == ["name", "synonyms", "dataset_name"] for row in table)
    assert table[0] == {"name": "accordion", "synonyms": [], "dataset_name": "accordion"}
    assert table[2] == {"name": "air conditioner", "synonyms": [], "dataset_name": "air conditioner"}
    assert table[1] == {"name": "aeroplane", "synonyms": ["airplane", "plane"], "dataset_name": "aeroplane"}
    assert table[307] == {"name": "potted plant", "synonyms": ["pottedplant", "houseplant"],
                          "dataset_name": "pottedplant"}
    assert table[325] == {"name": "rock", "synonyms": [], "dataset_name": "rock"}  # 'stone' is label 382
    assert table[381]["name"] == "stone" and table[4]["name"] == "placeholder label 5"

    p = get_protocol("pascal-context-459", data_root=pc_root)
    classes = p.require_classes()
    assert len(classes) == 459 and [c.id for c in classes] == list(range(459))
    assert classes[1].partition == "base" and classes[0].partition == "novel"  # COCO has 'airplane'
    assert classes[426].name == "tv monitor" and classes[426].dataset_name == "tvmonitor"
    pc59 = {c.dataset_name: c.partition for c in get_protocol("pascal-context-59").require_classes()}
    assert all(pc59[c.dataset_name] == c.partition for c in classes if c.dataset_name in pc59)


def test_pascal_context_rerun_is_idempotent_and_removes_stale_files(pc_root):
    pascal_context.PREPARER.prepare(pc_root, progress=False)
    first = files_under(pc_root)
    stale = pc_root / pascal_context.CTX59_OUT / "2008_999999.png"
    stale.write_bytes(b"old")
    report = pascal_context.PREPARER.prepare(pc_root, progress=False)
    assert files_under(pc_root) == first  # same bytes, untouched (same mtimes), stale file gone
    assert counts(report, pascal_context.CTX59_OUT) == {
        "images": 2, "classes_present": 8, "min_class": 0, "max_class": 58, "written": 0, "unchanged": 2,
        "stale_removed": 1}
    assert counts(report, pascal_context.IMAGES_OUT)["unchanged"] == 2
    assert not [n for n in first if n.endswith(".tmp")]


@pytest.mark.parametrize("breakage, match", [
    ("corrupt", "cannot read it as a MATLAB file"),
    ("size", "5x3, its image is 6x3"),
    ("range", "LabelMap value 460 is no labels.txt id"),
    ("no labelmap", "holds no 'LabelMap'"),
])
def test_pascal_context_bad_annotation_writes_nothing(pc_root, breakage, match):
    path = pc_root / pascal_context.MATS / "2008_000003.mat"  # the last val image
    if breakage == "corrupt":
        path.write_bytes(path.read_bytes()[:60])
    elif breakage == "size":
        save_jpeg(pc_root / pascal_context.IMAGES / "2008_000003.jpg", 6, 3)
    elif breakage == "range":
        save_mat(path, np.array([[0, 460], [1, 2]]))
    else:
        scipy.io.savemat(path, {"Label": np.zeros((3, 5), np.uint16)})
    assert_fails_writing_nothing(pc_root, pascal_context.PREPARER, match, path)


def test_pascal_context_labels_txt_is_checked(pc_root):
    path = pc_root / pascal_context.LABELS_TXT
    good = path.read_text()
    path.write_text(good.replace("2: aeroplane\n", "2: airplane\n"))
    assert_fails_writing_nothing(pc_root, pascal_context.PREPARER,
                                 "label 2 is 'airplane', protocol pascal-context-59 has 'aeroplane'", path)
    path.write_text(good.replace("459: wool\n", ""))
    assert_fails_writing_nothing(pc_root, pascal_context.PREPARER, "458 labels, expected ids 1..459", path)
    path.write_text(good.replace("3: air conditioner\n", "3 air conditioner\n"))
    assert_fails_writing_nothing(pc_root, pascal_context.PREPARER, "line 3 .* is not '<id>: <name>'", path)


def test_labels_txt_with_bom_and_crlf_reads(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_bytes(b"\xef\xbb\xbf" + labels_txt().replace("\n", "\r\n").encode())
    names = pascal_context.read_labels_txt(path)
    assert (len(names), names[0], names[2], names[307]) == (459, "accordion", "air conditioner", "pottedplant")


def test_pascal_context_missing_annotation_is_listed(pc_root):
    (pc_root / pascal_context.MATS / "2008_000002.mat").unlink()
    with pytest.raises(ValidationError) as e:
        pascal_context.PREPARER.prepare(pc_root, progress=False)
    assert e.value.problems == [f"{pc_root / pascal_context.MATS / '2008_000002.mat'} not found"]
    assert not (pc_root / pascal_context.OUT).exists()


# ---------------------------------------------------------------- pascal-voc


def test_pascal_voc_outputs_and_rerun(voc_root):
    report = pascal_voc.PREPARER.prepare(voc_root, progress=False)
    for image_id, values in VOC_VAL.items():
        expected = mapped(values, {0: 255, 255: 255, **{v: v - 1 for v in range(1, 21)}})
        np.testing.assert_array_equal(read(voc_root / pascal_voc.LABELS_OUT / f"{image_id}.png", "L"), expected)
        assert os.path.samefile(voc_root / pascal_voc.IMAGES_OUT / f"{image_id}.jpg",
                                voc_root / pascal_voc.IMAGES / f"{image_id}.jpg")
    np.testing.assert_array_equal(read(voc_root / pascal_voc.LABELS_OUT / "2007_000033.png", "L"), [
        [255, 255, 0, 0, 255], [255, 14, 14, 255, 19], [255] * 4 + [19]])
    assert not (voc_root / pascal_voc.IMAGES_OUT / "2007_000032.jpg").exists()
    gt = SemsegGroundTruth(get_protocol("pascal-voc-20"), voc_root)
    assert gt.ids() == sorted(VOC_VAL)
    assert counts(report, pascal_voc.LABELS_OUT) == {
        "images": 2, "classes_present": 4, "min_class": 0, "max_class": 19, "written": 2, "unchanged": 0,
        "stale_removed": 0}
    assert "val.txt lists 2 images, the official list 1449" in report.notes[0]

    first = files_under(voc_root)
    again = pascal_voc.PREPARER.prepare(voc_root, progress=False)
    assert files_under(voc_root) == first
    assert counts(again, pascal_voc.LABELS_OUT)["unchanged"] == 2
    assert counts(again, pascal_voc.IMAGES_OUT)["unchanged"] == 2


def _rgb(path: Path) -> None:
    Image.new("RGB", (2, 2), (128, 0, 0)).save(path)  # a colour rendering of the labels


def _grey(path: Path) -> None:
    Image.fromarray(np.array([[7, 7], [255, 0]], np.uint8)).save(path)  # indices right, but no palette


def _index_21(path: Path) -> None:
    save_palette_png(path, np.array([[7, 21], [255, 0]]))


def _size(path: Path) -> None:
    save_palette_png(path, np.array([[7, 7, 7], [255, 0, 0]]))


@pytest.mark.parametrize("breakage, match", [
    (_rgb, "not a VOC SegmentationClass PNG .*mode RGB"),
    (_grey, "mode L; VOC SegmentationClass PNGs are palette"),
    (_index_21, "palette index 21 is no VOC label"),
    (_size, "3x2, its image is 2x2"),
])
def test_pascal_voc_bad_label_writes_nothing(voc_root, breakage: Callable[[Path], None], match):
    path = voc_root / pascal_voc.LABELS / "2007_000042.png"  # the last val image
    breakage(path)
    assert_fails_writing_nothing(voc_root, pascal_voc.PREPARER, match, path)


def test_id_list_is_checked(voc_root):
    path = voc_root / pascal_voc.VAL_LIST
    path.write_text("2007_000033\n2007_000042\n2007_000033\n")
    assert_fails_writing_nothing(voc_root, pascal_voc.PREPARER, "image id 2007_000033 is listed twice", path)
    path.write_text("2007_000033  1\n")
    assert_fails_writing_nothing(voc_root, pascal_voc.PREPARER, "is not one image id", path)


def test_link_falls_back_to_a_copy(tmp_path, monkeypatch):
    src, dst = tmp_path / "a.jpg", tmp_path / "out" / "a.jpg"
    save_jpeg(src, 3, 2)

    def refuse(*_):
        raise OSError("cross-device link")
    monkeypatch.setattr(os, "link", refuse)
    assert pascal_voc.link_or_copy(src, dst) == "copied"
    assert dst.read_bytes() == src.read_bytes() and not os.path.samefile(src, dst)
    assert pascal_voc.link_or_copy(src, dst) == "unchanged"
    assert [p.name for p in dst.parent.iterdir()] == ["a.jpg"]


# ---------------------------------------------------------------- cityscapes


def test_cityscapes_outputs_and_rerun(cs_root):
    report = cityscapes.PREPARER.prepare(cs_root, progress=False)
    for split, frames in (("val", CS_VAL), ("train", CS_TRAIN)):
        for frame, values in frames.items():
            out = cs_root / cityscapes.GT / split / f"{frame}{cityscapes.TRAIN_IDS_SUFFIX}"
            np.testing.assert_array_equal(read(out, "L"), mapped(values, TRAIN_ID))
    np.testing.assert_array_equal(
        read(cs_root / cityscapes.GT / "val" / f"frankfurt/frankfurt_000000_000294{cityscapes.TRAIN_IDS_SUFFIX}",
             "L")[:2], [[255, 255, 0, 0, 1, 255, 2, 10], [11, 13, 13, 16, 18, 5, 0, 0]])
    gt = SemsegGroundTruth(get_protocol("cityscapes-19"), cs_root)
    assert gt.ids() == sorted(CS_VAL) and all(gt.image_path(i).is_file() for i in gt.ids())
    assert counts(report, f"{cityscapes.GT}/val") == {
        "images": 3, "cities": 2, "classes_present": 11, "min_class": 0, "max_class": 18, "written": 3,
        "unchanged": 0}
    assert counts(report, f"{cityscapes.GT}/train")["images"] == 1
    notes = " | ".join(report.notes)
    assert "val: 3 images, the official val set 500" in notes
    assert "train: 1 images, the official train set 2975" in notes

    first = files_under(cs_root)
    again = cityscapes.PREPARER.prepare(cs_root, progress=False)
    assert files_under(cs_root) == first
    assert counts(again, f"{cityscapes.GT}/val")["unchanged"] == 3


def test_cityscapes_train_is_optional(tmp_path):
    report = cityscapes.PREPARER.prepare(make_cityscapes(tmp_path, train=False), progress=False)
    assert [f.path for f in report.files] == [f"{cityscapes.GT}/val"]
    assert any("train not prepared" in n for n in report.notes)


def _value_34(path: Path) -> None:
    Image.fromarray(np.full((4, 8), 34, np.uint8)).save(path)


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def _cs_size(path: Path) -> None:
    Image.fromarray(np.full((4, 9), 7, np.uint8)).save(path)


@pytest.mark.parametrize("breakage, match", [
    (_value_34, "value 34 is no Cityscapes label id"),
    (_corrupt, "not a Cityscapes labelIds PNG"),
    (_cs_size, "9x4, its image is 8x4"),
])
def test_cityscapes_bad_label_ids_write_nothing(cs_root, breakage: Callable[[Path], None], match):
    path = cs_root / cityscapes.GT / "train" / f"aachen/aachen_000000_000019{cityscapes.IDS_SUFFIX}"
    breakage(path)  # train is checked before anything of val is written
    assert_fails_writing_nothing(cs_root, cityscapes.PREPARER, match, path)


def test_cityscapes_unpaired_files_are_listed(cs_root):
    label = cs_root / cityscapes.GT / "val" / f"lindau/lindau_000000_000019{cityscapes.IDS_SUFFIX}"
    label.unlink()
    image = cs_root / cityscapes.IMAGES / "val" / f"frankfurt/frankfurt_000000_000576{cityscapes.IMAGE_SUFFIX}"
    image.unlink()
    with pytest.raises(ValidationError) as e:
        cityscapes.PREPARER.prepare(cs_root, progress=False)
    assert len(e.value.problems) == 2
    assert f"{label} not found" in e.value.problems[0] and f"{image} not found" in e.value.problems[1]
    assert not list(cs_root.rglob(f"*{cityscapes.TRAIN_IDS_SUFFIX}"))


# ---------------------------------------------------------------- all three


@pytest.mark.parametrize("preparer", [pascal_context.PREPARER, pascal_voc.PREPARER, cityscapes.PREPARER],
                         ids=lambda p: p.name)
def test_missing_inputs_are_all_listed_with_their_source(tmp_path, preparer):
    with pytest.raises(ValidationError) as e:
        preparer.prepare(tmp_path, progress=False)
    assert len(e.value.problems) == len(preparer.inputs)
    for f, problem in zip(preparer.inputs, e.value.problems):
        assert problem.startswith(f"{tmp_path / f.path} not found") and f.source in problem
    assert list(tmp_path.iterdir()) == []
