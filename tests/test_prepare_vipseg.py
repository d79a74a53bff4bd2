"""Protocols vipseg-ov / vipseg-ov-instance and ``ovbench data prepare vipseg`` on a miniature VIPSeg_720P.

The fixture keeps VIPSeg's real layout and encodings (VIPSeg-Dataset/VIPSeg-Dataset README and
create_panoptic_video_labels.py): ``VIPSeg_720P/{train,val}.txt``, ``images/<video>/<8-digit>.jpg``,
``panomasks/<video>/<8-digit>.png`` as single-channel integer PNGs where 0 = void, a stuff pixel is
category id + 1 and a thing pixel (category id + 1) * 100 + instance id (person, category 60, is 6100,
6101, ...), plus the value 200 of VIPSeg issue #1 (a defect that must become void).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from ovbench.cli import main
from ovbench.errors import OvbenchError, ValidationError
from ovbench.prepare import PREPARERS, prepare, vipseg
from ovbench.protocols import get_protocol
from ovbench.protocols.overlap import normalise_name
from ovbench.protocols.registry import DEFS_DIR

GKC_NOVEL = {78: "basket", 94: "bathtub", 112: "blackboard", 76: "box", 102: "fan", 32: "ice", 122: "instrument",
             116: "printer", 80: "trash_can", 57: "tyre", 34: "grandstand", 11: "pillar"}
#: isthing == 1 in VIPSeg's panoVIPSeg_categories.json (VIPSeg-Dataset/VIPSeg-Dataset@92e1459).
VIPSEG_THINGS = {2, 4, 8, 10, 41, 43, 44, 46, 47, 48, 49, 50, 51, 52, 54, 55, 56, 60, 61, 62, 63, 64, 65, 72, 74,
                 76, 77, 78, 79, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 95, 96, 97, 99, 100, 101, 102, 106,
                 107, 108, 109, 114, 115, 116, 117, 118, 122, 123}

# panomask values: category id + 1 for stuff, (category id + 1) * 100 + instance for things
VOID, WALL, PILLAR, SKY, BATHTUB = 0, 1, 12, 29, 95          # categories -, 0, 11 (novel), 28, 94 (novel)
PERSON_A, PERSON_B, PERSON_BARE, BOX, BASKET = 6100, 6101, 61, 7700, 7900  # 60, 60, 60, 76 (novel), 78 (novel)
DEFECT = 200                                                    # VIPSeg issue #1: should be 0
V1, V2, T1 = "127_-hIVCYO4C90", "1643_T9npC-YHzuE", "0_wHveSGjXyDY"  # real VIPSeg video names

MASKS = {
    ("val", V1): [
        [[VOID, WALL, WALL, PILLAR, PILLAR, DEFECT],
         [PERSON_A, PERSON_A, WALL, BOX, BOX, BATHTUB],
         [PERSON_A, PERSON_B, PERSON_BARE, SKY, SKY, SKY],
         [VOID, VOID, VOID, VOID, VOID, VOID]],
        [[VOID, WALL, WALL, WALL, WALL, WALL],
         [SKY, SKY, WALL, BOX, WALL, WALL],
         [SKY, PERSON_B, PERSON_B, SKY, SKY, SKY],
         [VOID, VOID, VOID, VOID, VOID, VOID]],
        [[PERSON_A, WALL, WALL, WALL, WALL, WALL],
         [SKY, SKY, SKY, SKY, SKY, SKY],
         [SKY, SKY, SKY, SKY, SKY, SKY],
         [VOID, VOID, VOID, VOID, VOID, VOID]],
    ],
    ("val", V2): [  # stuff only, stored as an 8-bit PNG
        [[SKY] * 6, [SKY] * 6, [WALL] * 6, [PILLAR] * 6],
        [[SKY] * 6, [WALL] * 6, [WALL] * 6, [PILLAR] * 6],
    ],
    ("train", T1): [
        [[PERSON_A, PERSON_A, BOX, BOX, BASKET, BASKET],
         [WALL, WALL, PILLAR, PILLAR, VOID, VOID],
         [SKY] * 6, [SKY] * 6],
        [[VOID, PERSON_A, BOX, BOX, SKY, SKY],
         [WALL, WALL, PILLAR, PILLAR, VOID, VOID],
         [SKY] * 6, [SKY] * 6],
    ],
}


def semantic(values, novel_void: bool = False) -> np.ndarray:
    """Expected label map, written out independently of the preparer's tables."""
    table = {VOID: 255, WALL: 0, PILLAR: 11, SKY: 28, BATHTUB: 94, DEFECT: 255, PERSON_A: 60, PERSON_B: 60,
             PERSON_BARE: 60, BOX: 76, BASKET: 78}
    out = np.vectorize(table.__getitem__)(np.array(values))
    if novel_void:
        out[np.isin(out, list(GKC_NOVEL))] = 255
    return out.astype(np.uint8)


def make_vipseg(root: Path, categories: bool = True) -> Path:
    base = root / "VIPSeg" / "VIPSeg_720P"
    for split in ("train", "val"):
        names = [v for (s, v) in MASKS if s == split]
        (base).mkdir(parents=True, exist_ok=True)
        (base / f"{split}.txt").write_text("".join(f"{v}\n" for v in names))
    for (split, video), frames in MASKS.items():
        for t, values in enumerate(frames, start=1):
            arr = np.array(values)
            name = f"{t:08d}"
            (base / "images" / video).mkdir(parents=True, exist_ok=True)
            (base / "panomasks" / video).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (arr.shape[1], arr.shape[0]), (t * 40, 90, 200)).save(
                base / "images" / video / f"{name}.jpg")
            dtype = np.uint8 if arr.max() < 256 else np.uint16
            Image.fromarray(arr.astype(dtype)).save(base / "panomasks" / video / f"{name}.png")
    if categories:
        (base / "panoVIPSeg_categories.json").write_text(json.dumps(
            [{"id": c.id, "name": c.dataset_name, "isthing": int(c.id in VIPSEG_THINGS), "color": [c.id, 0, 0]}
             for c in get_protocol("vipseg-ov").classes]))
    return root


@pytest.fixture
def vip_root(tmp_path: Path) -> Path:
    return make_vipseg(tmp_path)


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_label(root: Path, split_dir: str, video: str, frame: int) -> np.ndarray:
    with Image.open(root / split_dir / video / f"{frame:08d}.png") as im:
        assert im.mode == "L"
        return np.asarray(im)


# ---------------------------------------------------------------- protocols


def test_semseg_protocol_is_gkc_split_over_vipseg_ids():
    p = get_protocol("vipseg-ov")
    assert (p.task, p.num_classes, p.num_base, p.num_novel, p.ignore_label) == ("video-semseg", 124, 112, 12, 255)
    classes = p.require_classes()
    assert [c.id for c in classes] == list(range(124))
    assert {c.id: c.dataset_name for c in classes if c.partition == "novel"} == GKC_NOVEL
    assert set(p.partition_rule["novel_category_ids"]) == set(GKC_NOVEL)
    assert p.definition["dataset_ids"] == list(range(1, 125))
    assert classes[0].dataset_name == "wall" and classes[60].name == "person" and classes[123].name == "train"
    by_ds = {c.dataset_name: c for c in classes}
    assert by_ds["Playground_slide"].name == "playground slide"
    assert by_ds["handrail_or_fence"].name == "handrail or fence"
    assert {"handrail", "fence"} <= set(by_ds["handrail_or_fence"].synonyms)
    assert by_ds["trash_can"].name == "trash can" and by_ds["Mobile_phone"].name == "mobile phone"
    owner: dict[str, int] = {}
    for c in classes:  # a prompt points at one class
        for n in {normalise_name(x) for x in c.names}:
            assert owner.setdefault(n, c.id) == c.id, f"{n!r} used by classes {owner[n]} and {c.id}"
    assert p.layout.label_path(Path("/d"), f"{V1}/00000001") == Path(f"/d/VIPSeg/ovbench/semantic/val/{V1}/00000001.png")
    assert p.layout.image_path(Path("/d"), f"{V1}/00000001") == Path(f"/d/VIPSeg/VIPSeg_720P/images/{V1}/00000001.jpg")
    assert p.layout.labels == vipseg.SEMANTIC_OUT["val"] + "/{id}.png"
    assert p.evaluation["vc_windows"] == [8, 16] and "i = 0 .. T-n-1" in p.evaluation["video_consistency"]
    assert {"mIoU", "mIoU_base", "mIoU_novel", "mVC8", "mVC16", "mVCc8", "mVCc16", "mVC8_novel",
            "mVCc16_base"} <= set(p.metrics)
    assert "short=360" in p.evaluation["inference"]["resize"]


def test_instance_protocol_is_the_thing_classes():
    p = get_protocol("vipseg-ov-instance")
    semseg = get_protocol("vipseg-ov").classes
    assert p.task == "video-instance" and p.ignore_label is None
    assert list(p.classes) == [c for c in semseg if c.id in VIPSEG_THINGS]
    assert (p.num_classes, p.num_base, p.num_novel) == (58, 53, 5)
    assert {c.id for c in p.classes if c.partition == "novel"} == {76, 78, 102, 116, 122}
    assert set(p.partition_rule["novel_category_ids"]) == {76, 78, 102, 116, 122}
    assert p.layout.labels == vipseg.INSTANCES_OUT["val"]
    assert p.evaluation["max_detections"] == [100] and "issue #15" in p.evaluation["generalized"]
    assert "20 highest-scoring" in p.evaluation["jf"]["protocol"]
    # the definitions are stored as the other defs: indent 1, final newline
    for name in ("vipseg-ov", "vipseg-ov-instance"):
        text = (DEFS_DIR / f"{name}.json").read_text()
        assert text == json.dumps(json.loads(text), indent=1) + "\n"


def test_tables_decode_vipseg_values():
    classes = get_protocol("vipseg-ov").classes
    t = vipseg.build_tables(classes, VIPSEG_THINGS, {c.id for c in classes})
    assert t.semantic[[0, 1, 12, 124, 6100, 6199, 12300, 12399]].tolist() == [255, 0, 11, 123, 60, 60, 122, 122]
    assert t.semantic[[100, 124]].tolist() == [99, 123]           # stuff values up to 124 are not things
    assert t.semantic[[125, 199, 200, 1200]].tolist() == [255] * 4  # stuff categories in thing style: void
    assert t.anomalous[[125, 200, 1200]].all() and not t.anomalous[[0, 1, 124, 6100]].any()
    assert t.track_category[[6100, 7700, 1, 200]].tolist() == [60, 76, -1, -1]
    assert t.bare_thing[61] and not t.bare_thing[1]


# ---------------------------------------------------------------- preparer


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools decode, numpy 2
def test_prepare_outputs(vip_root):
    report = prepare("vipseg", vip_root, progress=False)
    out = vip_root

    for t, values in enumerate(MASKS[("val", V1)], start=1):
        np.testing.assert_array_equal(read_label(out, vipseg.SEMANTIC_OUT["val"], V1, t), semantic(values))
    np.testing.assert_array_equal(read_label(out, vipseg.SEMANTIC_OUT["val"], V1, 1), [
        [255, 0, 0, 11, 11, 255], [60, 60, 0, 76, 76, 94], [60, 60, 60, 28, 28, 28], [255] * 6])
    for t, values in enumerate(MASKS[("val", V2)], start=1):
        np.testing.assert_array_equal(read_label(out, vipseg.SEMANTIC_OUT["val"], V2, t), semantic(values))
    for t, values in enumerate(MASKS[("train", T1)], start=1):
        np.testing.assert_array_equal(read_label(out, vipseg.SEMANTIC_OUT["train"], T1, t),
                                      semantic(values, novel_void=True))
    np.testing.assert_array_equal(read_label(out, vipseg.SEMANTIC_OUT["train"], T1, 1)[:2], [
        [60, 60, 255, 255, 255, 255], [0, 0, 255, 255, 255, 255]])
    assert sorted(p.relative_to(out / "VIPSeg/ovbench/semantic").as_posix()
                  for p in (out / "VIPSeg/ovbench/semantic").rglob("*.png")) == sorted(
        [f"val/{V1}/{t:08d}.png" for t in (1, 2, 3)] + [f"val/{V2}/{t:08d}.png" for t in (1, 2)]
        + [f"train_base/{T1}/{t:08d}.png" for t in (1, 2)])

    val = json.loads((out / vipseg.INSTANCES_OUT["val"]).read_text())
    assert list(val) == ["videos", "annotations", "categories"]
    assert val["videos"] == [
        {"id": 1, "name": V1, "width": 6, "height": 4, "length": 3,
         "file_names": [f"{V1}/00000001.jpg", f"{V1}/00000002.jpg", f"{V1}/00000003.jpg"]},
        {"id": 2, "name": V2, "width": 6, "height": 4, "length": 2,
         "file_names": [f"{V2}/00000001.jpg", f"{V2}/00000002.jpg"]}]
    things = get_protocol("vipseg-ov-instance").classes
    assert val["categories"] == [{"id": c.id, "name": c.name, "partition": c.partition} for c in things]
    anns = val["annotations"]
    assert [(a["id"], a["video_id"], a["category_id"]) for a in anns] == [(1, 1, 60), (2, 1, 60), (3, 1, 76)]
    frames = [np.array(v) for v in MASKS[("val", V1)]]
    for ann, value in zip(anns, (PERSON_A, PERSON_B, BOX)):
        assert ann["iscrowd"] == 0 and ann["length"] == 1
        for t, (seg, area, box) in enumerate(zip(ann["segmentations"], ann["areas"], ann["bboxes"])):
            m = frames[t] == value
            if not m.any():
                assert seg is None and area is None and box is None
                continue
            assert isinstance(seg["counts"], str) and seg["size"] == [4, 6]
            np.testing.assert_array_equal(mask_utils.decode({**seg, "counts": seg["counts"].encode()}), m)
            ys, xs = np.nonzero(m)
            assert area == int(m.sum())
            assert box == [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                           float(ys.max() - ys.min() + 1)]
    assert [s is None for s in anns[0]["segmentations"]] == [False, True, False]   # person A leaves and returns
    assert [s is None for s in anns[1]["segmentations"]] == [False, False, True]
    assert anns[0]["areas"] == [3, None, 1] and anns[2]["bboxes"][1] == [3.0, 1.0, 1.0, 1.0]

    train = json.loads((out / vipseg.INSTANCES_OUT["train"]).read_text())
    assert [v["name"] for v in train["videos"]] == [T1]
    assert [(a["video_id"], a["category_id"], a["areas"]) for a in train["annotations"]] == [(1, 60, [2, 1])]
    assert len(train["categories"]) == 53 and {c["partition"] for c in train["categories"]} == {"base"}

    counts = {f.path: (f.action, dict(f.counts)) for f in report.files}
    assert counts[vipseg.CATEGORIES_IN] == ("checked", {"categories": 124, "things": 58})
    assert counts[vipseg.SEMANTIC_OUT["val"]] == ("wrote", {
        "videos": 2, "frames": 5, "frames_min": 2, "frames_max": 3, "classes_present": 6, "min_class": 0,
        "max_class": 94, "void_defect_frames": 1, "void_defect_pixels": 1, "thing_pixels_without_instance": 1,
        "stale_removed": 0})
    assert counts[vipseg.INSTANCES_OUT["val"]] == ("wrote", {
        "videos": 2, "videos_with_tracks": 1, "tracks": 3, "tracks_base": 2, "tracks_novel": 1, "masks": 6})
    assert counts[vipseg.SEMANTIC_OUT["train"]][1]["classes_present"] == 3  # wall, sky, person
    assert counts[vipseg.INSTANCES_OUT["train"]][1]["tracks"] == 1
    notes = " | ".join(report.notes)
    assert "VIPSeg issue #1" in notes and "val.txt lists 2 videos, the official list 343" in notes


def test_json_is_compact_and_has_write_json_bytes(vip_root):
    prepare("vipseg", vip_root, progress=False)
    for path in vipseg.INSTANCES_OUT.values():
        text = (vip_root / path).read_text()
        assert text == json.dumps(json.loads(text), separators=(",", ":")) + "\n"


def test_idempotent_removes_stale_labels_and_leaves_no_temporary_file(vip_root):
    prepare("vipseg", vip_root, progress=False)
    first = files_under(vip_root)
    stale = vip_root / vipseg.SEMANTIC_OUT["val"] / "999_gone" / "00000001.png"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    report = prepare("vipseg", vip_root, progress=False)
    assert files_under(vip_root) == first
    assert not stale.parent.exists()
    assert dict(report.files[1].counts)["stale_removed"] == 1
    assert not [n for n in first if n.endswith(".tmp") or "/." in n]
    umask = os.umask(0)
    os.umask(umask)
    for out in vipseg.INSTANCES_OUT.values():
        assert (vip_root / out).stat().st_mode & 0o777 == 0o666 & ~umask


def test_cli_runs_and_prints_counts(vip_root, capsys):
    assert main(["data", "prepare", "vipseg", "--root", str(vip_root), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {vipseg.SEMANTIC_OUT['val']}: videos 2, frames 5," in out
    assert f"wrote {vipseg.INSTANCES_OUT['val']}: videos 2, videos_with_tracks 1, tracks 3" in out


def test_missing_inputs_all_listed_exit_2_nothing_written(tmp_path, capsys):
    assert main(["data", "prepare", "vipseg", "--root", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "4 problem(s)" in err
    for f in PREPARERS["vipseg"].inputs:
        assert f"{tmp_path / f.path} not found" in err and f.source in err
    assert list(tmp_path.iterdir()) == []


def test_incomplete_layout_every_problem_listed_nothing_written(vip_root):
    base = vip_root / vipseg.ROOT
    (base / "panomasks" / V1 / "00000002.png").unlink()
    (base / "images" / T1 / "00000002.jpg").unlink()
    with open(base / "val.txt", "a") as f:
        f.write("9_missing\n")
    with pytest.raises(ValidationError) as e:
        prepare("vipseg", vip_root, progress=False)
    problems = e.value.problems
    assert len(problems) == 3
    assert any(f"{V1}: 1 frame(s) have no panomask" in p and "00000002.png" in p for p in problems)
    assert any(f"{T1}: 1 panomask(s) have no frame" in p for p in problems)
    assert any("9_missing" in p and "not found" in p for p in problems)
    assert not (vip_root / "VIPSeg" / "ovbench").exists()


def test_video_in_both_splits(vip_root):
    with open(vip_root / vipseg.SPLIT_LISTS["train"], "a") as f:
        f.write(f"{V2}\n")
    with pytest.raises(ValidationError, match="1 video\\(s\\) are in both train.txt and val.txt"):
        prepare("vipseg", vip_root, progress=False)


def test_value_outside_the_encoding_names_the_file(vip_root):
    path = vip_root / vipseg.PANOMASKS / V2 / "00000001.png"
    Image.fromarray(np.full((4, 6), 12500, np.uint16)).save(path)
    with pytest.raises(OvbenchError, match="value 12500 is no VIPSeg panoptic value") as e:
        prepare("vipseg", vip_root, progress=False)
    assert str(path) in str(e.value)
    assert not (vip_root / vipseg.INSTANCES_OUT["val"]).exists()


def test_colour_panomask_is_rejected(vip_root):
    path = vip_root / vipseg.PANOMASKS / V2 / "00000002.png"
    Image.new("RGB", (6, 4)).save(path)  # a panomasksRGB file in the wrong folder
    with pytest.raises(OvbenchError, match="not a VIPSeg panomask.*mode RGB"):
        prepare("vipseg", vip_root, progress=False)


def test_frame_and_mask_sizes_must_agree(vip_root):
    Image.new("RGB", (7, 4)).save(vip_root / vipseg.IMAGES / V1 / "00000002.jpg")
    with pytest.raises(OvbenchError, match="6x4, its frame is 7x4"):
        prepare("vipseg", vip_root, progress=False)


def test_wrong_category_file(vip_root):
    path = vip_root / vipseg.CATEGORIES_IN
    cats = json.loads(path.read_text())
    cats[60]["isthing"] = 0
    path.write_text(json.dumps(cats))
    with pytest.raises(OvbenchError, match="not VIPSeg's category list .*entry 60"):
        prepare("vipseg", vip_root, progress=False)


def test_category_file_is_optional(tmp_path):
    make_vipseg(tmp_path, categories=False)
    report = prepare("vipseg", tmp_path, progress=False)
    assert vipseg.CATEGORIES_IN not in {f.path for f in report.files}


def test_video_list_hash_matches_the_protocol_record():
    names = ["b_2", "a_1"]
    assert vipseg.video_list_sha256(names) == vipseg.video_list_sha256(sorted(names))
    assert len(get_protocol("vipseg-ov").definition["video_list"]["sha256"]) == 64
