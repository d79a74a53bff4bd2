"""``ovbench data prepare coco-ovd`` and ``... lvis`` on miniature copies of the official files.

The fixtures keep the real file names and JSON schema: all 80 COCO categories (ids and names
from protocol coco-panoptic-133), all 1203 LVIS categories (synthetic names, the real
337 rare / 461 common / 405 frequent split) and a handful of images and annotations.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ovbench.cli import main
from ovbench.errors import OvbenchError
from ovbench.prepare import PREPARERS, coco_ovd, lvis, prepare
from ovbench.protocols import get_protocol
from ovbench.protocols.registry import DEFS_DIR

PERSON, BICYCLE, CAT, DOG, TRAFFIC_LIGHT = 1, 2, 17, 18, 10  # base, base, novel, novel, excluded


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def coco_categories() -> list[dict[str, Any]]:
    d = json.loads((DEFS_DIR / "coco-panoptic-133.json").read_text())
    return [{"supercategory": "thing", "id": cid, "name": c["dataset_name"]}
            for cid, c in zip(d["dataset_ids"][:80], d["classes"][:80])]


def coco_image(iid: int, split: str) -> dict[str, Any]:
    name = f"{iid:012d}.jpg"
    return {"license": 1, "file_name": name, "coco_url": f"http://images.cocodataset.org/{split}/{name}",
            "height": 480, "width": 640, "date_captured": "2013-11-14 17:02:52", "flickr_url": "", "id": iid}


def coco_ann(aid: int, iid: int, cid: int, crowd: int = 0) -> dict[str, Any]:
    seg = {"counts": [0, 4, 60], "size": [8, 8]} if crowd else [[1.0, 1.0, 5.0, 1.0, 5.0, 5.0]]
    return {"segmentation": seg, "area": 8.0, "iscrowd": crowd, "image_id": iid, "bbox": [1.0, 1.0, 4.0, 4.0],
            "category_id": cid, "id": aid}


def coco_doc(split: str, images: list[int], anns: list[tuple[int, int, int, int]]) -> dict[str, Any]:
    """``anns``: (annotation id, image id, category id, iscrowd)."""
    return {"info": {"description": "COCO 2017 Dataset", "year": 2017},
            "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1, "name": "BY-NC-SA"}],
            "images": [coco_image(i, split) for i in images],
            "annotations": [coco_ann(*a) for a in anns],
            "categories": coco_categories()}


COCO_VAL = coco_doc("val2017", [1, 2, 3, 4, 5], [
    (101, 1, PERSON, 0), (102, 1, CAT, 0),         # base + novel: kept, both annotations
    (103, 2, TRAFFIC_LIGHT, 0),                    # only an excluded class: image dropped
    (104, 3, PERSON, 1), (105, 3, TRAFFIC_LIGHT, 0),  # crowd kept, excluded dropped
    (106, 5, DOG, 0)])                             # only novel: kept; image 4 has nothing: dropped
COCO_TRAIN = coco_doc("train2017", [11, 12, 13, 14], [
    (201, 11, PERSON, 0), (202, 11, CAT, 0),       # novel object stays in the image, unannotated
    (203, 12, DOG, 0),                             # only novel: image dropped
    (204, 13, TRAFFIC_LIGHT, 0), (205, 13, BICYCLE, 1)])  # crowd base kept, excluded dropped


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    write_json(tmp_path / coco_ovd.VAL_IN, COCO_VAL)
    write_json(tmp_path / coco_ovd.TRAIN_IN, COCO_TRAIN)
    return tmp_path


def lvis_frequency(cid: int) -> str:
    """Ids 2..338 rare (337), 1 and 339..798 common (461), 799..1203 frequent (405)."""
    return "r" if 2 <= cid <= 338 else "f" if cid >= 799 else "c"


def lvis_categories() -> list[dict[str, Any]]:
    cats = [{"id": cid, "name": f"thing_{cid}", "synonyms": [f"thing_{cid}"], "frequency": lvis_frequency(cid),
             "image_count": 1, "instance_count": 1, "def": "a thing", "synset": f"thing.n.{cid:02d}"}
            for cid in range(1, 1204)]
    cats[0].update(name="aerosol_can", synonyms=["aerosol_can", "spray_can", "spray can"], synset="can.n.01")
    return cats


def lvis_image(iid: int, split: str, neg: list[int], not_exhaustive: list[int]) -> dict[str, Any]:
    return {"id": iid, "coco_url": f"http://images.cocodataset.org/{split}/{iid:012d}.jpg", "height": 480,
            "width": 640, "license": 1, "flickr_url": "", "date_captured": "2013-11-14 17:02:52",
            "neg_category_ids": neg, "not_exhaustive_category_ids": not_exhaustive}


def lvis_ann(aid: int, iid: int, cid: int) -> dict[str, Any]:
    return {"id": aid, "image_id": iid, "category_id": cid, "bbox": [1.0, 1.0, 4.0, 4.0], "area": 8.0,
            "segmentation": [[1.0, 1.0, 5.0, 1.0, 5.0, 5.0]]}


RARE, COMMON, FREQUENT = 2, 1, 900
LVIS_VAL = {"info": {"year": 2020}, "licenses": [], "categories": lvis_categories(),
            "images": [lvis_image(139, "val2017", [RARE], []), lvis_image(285, "val2017", [], [COMMON])],
            "annotations": [lvis_ann(1, 139, COMMON), lvis_ann(2, 139, RARE), lvis_ann(3, 285, FREQUENT)]}
LVIS_TRAIN = {"info": {"year": 2020}, "licenses": [], "categories": lvis_categories(),
              "images": [lvis_image(9, "train2017", [3, 400], [RARE, FREQUENT]),  # kept, rare ids removed
                         lvis_image(25, "train2017", [], []),                     # only rare: dropped
                         lvis_image(30, "val2017", [], []),                       # frequent: kept
                         lvis_image(34, "train2017", [COMMON], [])],              # no annotation: dropped
              "annotations": [lvis_ann(11, 9, COMMON), lvis_ann(12, 9, RARE), lvis_ann(13, 25, RARE),
                              lvis_ann(14, 30, FREQUENT)]}


@pytest.fixture
def lvis_root(tmp_path: Path) -> Path:
    write_json(tmp_path / lvis.VAL_IN, LVIS_VAL)
    write_json(tmp_path / lvis.TRAIN_IN, LVIS_TRAIN)
    return tmp_path


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_paths_agree_with_the_protocols():
    assert get_protocol("coco-ovd").layout.labels == coco_ovd.VAL_OUT
    assert coco_ovd.TRAIN_OUT in get_protocol("coco-ovd").notes
    p = get_protocol("lvis-ovd")
    assert p.layout.labels == lvis.VAL_IN and p.class_table["file"] == lvis.CLASS_TABLE_OUT
    assert sum(lvis.FREQUENCIES.values()) == p.num_classes
    assert {"coco-ovd", "lvis"} <= set(PREPARERS)


def test_coco_ovd_outputs(coco_root):
    report = prepare("coco-ovd", coco_root, progress=False)
    val = json.loads((coco_root / coco_ovd.VAL_OUT).read_text())
    assert list(val) == ["info", "licenses", "images", "annotations", "categories"]
    assert val["info"] == COCO_VAL["info"] and val["licenses"] == COCO_VAL["licenses"]
    assert [im["id"] for im in val["images"]] == [1, 3, 5]
    assert val["images"][0] == coco_image(1, "val2017")
    assert [a["id"] for a in val["annotations"]] == [101, 102, 104, 106]
    assert val["annotations"][2] == coco_ann(104, 3, PERSON, 1)
    classes = get_protocol("coco-ovd").classes
    assert [c["id"] for c in val["categories"]] == [c.id for c in classes]
    assert val["categories"][0] == {"supercategory": "thing", "id": 1, "name": "person", "partition": "base"}
    assert {c["partition"] for c in val["categories"] if c["id"] in (CAT, DOG)} == {"novel"}

    train = json.loads((coco_root / coco_ovd.TRAIN_OUT).read_text())
    assert [im["id"] for im in train["images"]] == [11, 13]
    assert [a["id"] for a in train["annotations"]] == [201, 205]
    assert [c["id"] for c in train["categories"]] == [c.id for c in classes if c.partition == "base"]
    assert len(train["categories"]) == 48 and {c["partition"] for c in train["categories"]} == {"base"}

    assert [(f.path, f.action) for f in report.files] == [(coco_ovd.VAL_OUT, "wrote"), (coco_ovd.TRAIN_OUT, "wrote")]
    assert dict(report.files[0].counts) == {"images": 3, "images_dropped": 2, "categories": 65, "annotations": 4,
                                            "annotations_base": 2, "annotations_novel": 2, "crowd": 1}
    assert dict(report.files[1].counts) == {"images": 2, "images_dropped": 2, "categories": 48, "annotations": 2,
                                            "annotations_base": 2, "crowd": 1}


def test_outputs_are_idempotent_and_leave_no_temporary_files(coco_root, lvis_root):
    prepare("coco-ovd", coco_root, progress=False)
    prepare("lvis", lvis_root, progress=False)
    first = files_under(coco_root)
    prepare("coco-ovd", coco_root, progress=False)
    prepare("lvis", lvis_root, progress=False)
    assert files_under(coco_root) == first
    assert not [name for name in first if name.endswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    for out in (coco_ovd.VAL_OUT, coco_ovd.TRAIN_OUT, lvis.CLASS_TABLE_OUT, lvis.TRAIN_OUT):
        assert (coco_root / out).stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_interrupted_run_leaves_no_partial_file(coco_root, monkeypatch):
    real_replace, calls = os.replace, []

    def replace_then_interrupt(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare("coco-ovd", coco_root, progress=False)
    out_dir = coco_root / "coco/annotations/ovbench"
    assert sorted(p.name for p in out_dir.iterdir()) == ["instances_val2017_ovd65.json"]
    assert json.loads((out_dir / "instances_val2017_ovd65.json").read_text())["categories"]


def test_cli_prints_what_it_wrote(coco_root, capsys):
    assert main(["data", "prepare", "coco-ovd", "--root", str(coco_root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {coco_ovd.VAL_OUT}: images 3, images_dropped 2, categories 65, annotations 4" in out
    assert f"wrote {coco_ovd.TRAIN_OUT}: images 2," in out


@pytest.mark.parametrize("name", ["coco-ovd", "lvis"])
def test_missing_inputs_all_listed_exit_2_nothing_written(tmp_path, capsys, name):
    assert main(["data", "prepare", name, "--root", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err
    for f in PREPARERS[name].inputs:
        assert f"{tmp_path / f.path} not found" in err and f.source in err
    assert list(tmp_path.iterdir()) == []


def test_one_missing_input_is_named_alone(coco_root):
    (coco_root / coco_ovd.TRAIN_IN).unlink()
    with pytest.raises(OvbenchError, match="1 problem") as e:
        prepare("coco-ovd", coco_root, progress=False)
    assert coco_ovd.TRAIN_IN in str(e.value) and coco_ovd.VAL_IN not in str(e.value)


def test_corrupt_json_one_line_error_naming_the_file_nothing_written(coco_root, capsys):
    (coco_root / coco_ovd.TRAIN_IN).write_text('{"images": [')
    assert main(["data", "prepare", "coco-ovd", "--root", str(coco_root), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(coco_root / coco_ovd.TRAIN_IN) in err and "corrupt JSON" in err
    assert not (coco_root / "coco/annotations/ovbench").exists()  # val was fine, yet not written either


def test_not_the_coco_file(coco_root):
    doc = json.loads((coco_root / coco_ovd.VAL_IN).read_text())
    doc["categories"] = [c for c in doc["categories"] if c["id"] != CAT]
    doc["categories"][0]["name"] = "human"
    write_json(coco_root / coco_ovd.VAL_IN, doc)
    with pytest.raises(OvbenchError, match="not the COCO 2017 instances file: 2 of the 65") as e:
        prepare("coco-ovd", coco_root, progress=False)
    assert "'human', expected 'person'" in str(e.value) and "\n" not in str(e.value)
    assert not (coco_root / "coco/annotations/ovbench").exists()


def test_annotation_of_unknown_image(coco_root):
    doc = json.loads((coco_root / coco_ovd.TRAIN_IN).read_text())
    doc["annotations"].append(coco_ann(299, 77, PERSON))
    write_json(coco_root / coco_ovd.TRAIN_IN, doc)
    with pytest.raises(OvbenchError, match=r"1 image id\(s\) of annotations are not in 'images' \(e.g. 77\)"):
        prepare("coco-ovd", coco_root, progress=False)
    assert not (coco_root / "coco/annotations/ovbench").exists()


def test_lvis_outputs(lvis_root):
    report = prepare("lvis", lvis_root, progress=False)
    table = json.loads((lvis_root / lvis.CLASS_TABLE_OUT).read_text())
    assert [c["id"] for c in table] == list(range(1, 1204))
    assert table[0] == {"id": 1, "name": "aerosol can", "dataset_name": "aerosol_can", "synonyms": ["spray can"],
                        "frequency": "c"}
    assert table[1] == {"id": 2, "name": "thing 2", "dataset_name": "thing_2", "synonyms": [], "frequency": "r"}

    train = json.loads((lvis_root / lvis.TRAIN_OUT).read_text())
    assert list(train) == list(LVIS_TRAIN)
    assert [im["id"] for im in train["images"]] == [9, 30]
    assert train["images"][0] == lvis_image(9, "train2017", [400], [FREQUENT])
    assert train["annotations"] == [lvis_ann(11, 9, COMMON), lvis_ann(14, 30, FREQUENT)]
    assert len(train["categories"]) == 866 and "r" not in {c["frequency"] for c in train["categories"]}
    assert train["categories"][0] == LVIS_TRAIN["categories"][0]

    assert not (lvis_root / "lvis/lvis_v1_val_ovd.json").exists()
    assert json.loads((lvis_root / lvis.VAL_IN).read_text()) == LVIS_VAL
    counts = {f.path: (f.action, dict(f.counts)) for f in report.files}
    assert counts == {
        lvis.CLASS_TABLE_OUT: ("wrote", {"classes": 1203, "base": 866, "novel": 337}),
        lvis.TRAIN_OUT: ("wrote", {"images": 2, "images_dropped": 2, "categories": 866, "annotations": 2,
                                   "annotations_dropped_rare": 2}),
        lvis.VAL_IN: ("checked", {"images": 2, "categories": 1203, "annotations": 3, "annotations_rare": 1,
                                  "annotations_common": 1, "annotations_frequent": 1})}


def test_lvis_class_table_loads_through_the_protocol(lvis_root):
    prepare("lvis", lvis_root, progress=False)
    p = get_protocol("lvis-ovd", data_root=lvis_root)
    assert (p.num_classes, p.num_base, p.num_novel) == (1203, 866, 337)
    assert p.class_ids("novel") == list(range(2, 339))
    first = p.classes[0]
    assert (first.name, first.synonyms, first.dataset_name, first.partition) == \
        ("aerosol can", ("spray can",), "aerosol_can", "base")


@pytest.mark.parametrize("which, edit, message", [
    ("val", lambda d: d["categories"].pop(), "1202 categories (337 rare, 461 common, 404 frequent), protocol "
                                            "lvis-ovd expects 1203 (337 rare, 461 common, 405 frequent)"),
    ("val", lambda d: d["categories"][5].update(frequency="c"), "expects 1203"),
    ("val", lambda d: d["categories"][5].update(frequency="x"), "lack an integer id, a name, a synonyms list"),
    ("val", lambda d: d["images"][1].pop("neg_category_ids"), "1 image(s) lack an id or the federated fields"),
    ("train", lambda d: d["categories"][7].update(name="other"), "categories differ from those of"),
    ("train", lambda d: d["images"][0].pop("not_exhaustive_category_ids"), "federated fields"),
    ("train", lambda d: d["annotations"].append(lvis_ann(99, 9, 5000)), "category_id 5000, which is not among"),
])
def test_invalid_lvis_inputs_one_line_error_nothing_written(lvis_root, which, edit, message):
    path = lvis_root / (lvis.VAL_IN if which == "val" else lvis.TRAIN_IN)
    doc = json.loads(path.read_text())
    edit(doc)
    write_json(path, doc)
    with pytest.raises(OvbenchError) as e:
        prepare("lvis", lvis_root, progress=False)
    assert message in str(e.value) and str(path) in str(e.value) and "\n" not in str(e.value)
    assert sorted(p.name for p in (lvis_root / "lvis").iterdir()) == ["lvis_v1_train.json", "lvis_v1_val.json"]


def test_unknown_preparer():
    with pytest.raises(OvbenchError, match="unknown dataset preparer 'ade'"):
        prepare("ade", ".")
