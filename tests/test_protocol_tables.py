"""The real-dataset semseg protocols: class tables, partitions, hashes, dataset-sourced tables."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from ovbench.errors import OvbenchError
from ovbench.protocols import build_partitions
from ovbench.protocols.overlap import normalise_name, overlap_table
from ovbench.protocols.registry import DEFS_DIR, get_protocol, protocol_ids
from ovbench.protocols.schema import protocol_from_dict

REAL = {"coco-panoptic-133": 133, "ade-150": 150, "pascal-context-59": 59, "pascal-voc-20": 20,
        "cityscapes-19": 19, "ade-847": 847, "pascal-context-459": 459}
INLINE = ["coco-panoptic-133", "ade-150", "pascal-context-59", "pascal-voc-20", "cityscapes-19"]
GKC_NOVEL_IDS = {2, 33, 21, 25, 95, 76, 53, 57, 70, 145, 87, 46, 13, 100, 34, 41, 175, 148}
GKC_NOVEL_NAMES = {"bicycle", "suitcase", "cow", "giraffe", "keyboard", "apple", "carrot", "toilet", "scissors",
                   "wine glass", "stop sign", "frisbee", "skateboard", "bridge", "playingfield", "cardboard",
                   "wall-stone", "river"}


def _definition(pid: str) -> dict:
    return json.loads((DEFS_DIR / f"{pid}.json").read_text())


def test_every_registered_protocol_loads():
    ids = protocol_ids()
    assert set(REAL) <= set(ids)
    for pid in ids:
        p = get_protocol(pid)
        assert p.id == pid and p.version >= 1
        assert len(p.hash) == 16


@pytest.mark.parametrize("pid,k", sorted(REAL.items()))
def test_class_counts(pid, k):
    p = get_protocol(pid)
    assert p.num_classes == k
    if pid in INLINE:
        assert len(p.require_classes()) == k
        ids = _definition(pid).get("dataset_ids")
        assert ids is not None and len(ids) == k and len(set(ids)) == k


def test_coco_partition_is_gkc_split():
    p = get_protocol("coco-panoptic-133")
    assert (p.num_base, p.num_novel) == (115, 18)
    coco_ids = _definition("coco-panoptic-133")["dataset_ids"]
    novel = [c for c in p.require_classes() if c.partition == "novel"]
    assert {coco_ids[c.id] for c in novel} == GKC_NOVEL_IDS
    assert {c.dataset_name for c in novel} == GKC_NOVEL_NAMES
    assert set(p.partition_rule["novel_dataset_ids"]) == GKC_NOVEL_IDS
    assert p.partition_rule["kind"] == "declared"


@pytest.mark.parametrize("pid", INLINE)
def test_ids_contiguous_and_names_unique(pid):
    classes = get_protocol(pid).require_classes()
    assert [c.id for c in classes] == list(range(len(classes)))
    names = [normalise_name(c.name) for c in classes]
    assert len(set(names)) == len(names), "duplicate canonical names"
    # stricter: no name or synonym is shared by two classes (a prompt must point at one class)
    owner: dict[str, int] = {}
    for c in classes:
        for n in {normalise_name(x) for x in c.names}:
            assert owner.setdefault(n, c.id) == c.id, f"{n!r} used by classes {owner[n]} and {c.id}"
        assert c.dataset_name, f"class {c.id} has no dataset_name"


def test_spot_checks():
    coco = get_protocol("coco-panoptic-133").require_classes()
    coco_ids = _definition("coco-panoptic-133")["dataset_ids"]
    assert coco_ids[0] == 1 and coco[0].name == "person"
    assert coco[-1].dataset_name == "rug-merged" and coco_ids[-1] == 200
    by_ds = {c.dataset_name: c for c in coco}
    assert by_ds["tree-merged"].name == "tree" and by_ds["wall-stone"].name == "stone wall"
    assert sum(1 for c in coco if c.id < 80) == 80 and coco_ids[79] == 90 and coco_ids[80] == 92  # things first

    ade = get_protocol("ade-150").require_classes()
    assert ade[0].name == "wall" and ade[2].name == "sky"
    assert ade[1].dataset_name == "building, edifice" and ade[1].synonyms == ("edifice",)
    assert ade[149].name == "flag"

    cs = get_protocol("cityscapes-19").require_classes()
    assert cs[0].name == "road" and cs[18].name == "bicycle"
    assert _definition("cityscapes-19")["dataset_ids"][:2] == [7, 8]

    pc = get_protocol("pascal-context-59").require_classes()
    assert pc[0].name == "aeroplane" and pc[-1].name == "wood"
    assert pc[1].name == "bag"  # label-map (alphabetical) order, not 59_labels.txt order

    voc = get_protocol("pascal-voc-20").require_classes()
    assert voc[0].name == "aeroplane" and voc[-1].dataset_name == "tvmonitor"
    assert get_protocol("pascal-voc-20").ignore_label == 255


def test_stored_partitions_equal_overlap_rule():
    checked = 0
    for pid in protocol_ids():
        p = get_protocol(pid)
        if p.partition_rule.get("kind") != "overlap" or p.classes is None:
            continue
        train = get_protocol(p.partition_rule["train_protocol"]).require_classes()
        rows = overlap_table(p.require_classes(), train)
        assert [c.partition for c in p.require_classes()] == [r["partition"] for r in rows], pid
        checked += 1
    assert checked >= 4
    assert all(not r["changed"] for r in build_partitions.recompute())
    assert build_partitions.main(["--check"]) == 0


def test_overlap_counts():
    counts = {pid: (get_protocol(pid).num_base, get_protocol(pid).num_novel)
              for pid in ["ade-150", "pascal-context-59", "pascal-voc-20", "cityscapes-19"]}
    assert counts["pascal-voc-20"] == (20, 0)
    assert counts["cityscapes-19"] == (14, 5)
    assert counts["pascal-context-59"] == (51, 8)
    assert counts["ade-150"] == (63, 87)


def test_hash_changes_with_a_synonym():
    d = _definition("ade-150")
    base = protocol_from_dict(d).hash
    assert base == get_protocol("ade-150").hash
    changed = copy.deepcopy(d)
    changed["classes"][0]["synonyms"] = ["partition wall"]
    assert protocol_from_dict(changed).hash != base
    assert protocol_from_dict(copy.deepcopy(d)).hash == base


def test_build_partitions_rewrites_after_a_synonym_edit(tmp_path):
    defs = tmp_path / "defs"
    defs.mkdir()
    for name in ["coco-panoptic-133.json", "cityscapes-19.json"]:
        shutil.copy(DEFS_DIR / name, defs / name)
    path = defs / "cityscapes-19.json"
    d = json.loads(path.read_text())
    assert d["classes"][8]["name"] == "vegetation" and d["classes"][8]["partition"] == "novel"
    d["classes"][8]["synonyms"] = ["tree"]
    path.write_text(json.dumps(d, indent=1) + "\n")
    assert build_partitions.main(["--defs", str(defs), "--check"]) == 1
    assert json.loads(path.read_text())["classes"][8]["partition"] == "novel"  # --check writes nothing
    assert build_partitions.main(["--defs", str(defs)]) == 0
    text = path.read_text()
    assert json.loads(text)["classes"][8]["partition"] == "base"
    assert text == json.dumps(json.loads(text), indent=1) + "\n"
    assert build_partitions.main(["--defs", str(defs), "--check"]) == 0


def test_dataset_sourced_table_needs_the_data_root():
    p = get_protocol("ade-847")
    assert p.classes is None and p.num_base is None
    with pytest.raises(OvbenchError, match="ovbench data prepare ade20k-full"):
        p.require_classes()
    with pytest.raises(OvbenchError, match="pascal-context-459.*ovbench data prepare pascal-context"):
        get_protocol("pascal-context-459").require_classes()


def test_dataset_sourced_table_loads_with_overlap_partitions(tmp_path):
    p = get_protocol("ade-847")
    table = [{"name": f"zz object {i}", "synonyms": [], "dataset_name": f"zz object {i}"} for i in range(847)]
    table[0] = {"name": "wall", "synonyms": [], "dataset_name": "wall"}
    table[1] = {"name": "building", "synonyms": ["edifice"], "dataset_name": "building, edifice"}
    table[5] = {"name": "zz thing", "synonyms": ["automobile"], "dataset_name": "zz thing, automobile"}
    path = tmp_path / p.class_table["file"]
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(table))

    loaded = get_protocol("ade-847", data_root=tmp_path)
    classes = loaded.require_classes()
    assert len(classes) == 847 and [c.id for c in classes] == list(range(847))
    assert [classes[i].partition for i in (0, 1, 2, 5)] == ["base", "base", "novel", "base"]
    assert (loaded.num_base, loaded.num_novel) == (3, 844)
    assert loaded.class_table["loaded_from"] == p.class_table["file"]
    assert loaded.hash != p.hash

    path.write_text(json.dumps(table[:846]))
    with pytest.raises(OvbenchError, match="846 classes"):
        get_protocol("ade-847", data_root=tmp_path)


def test_missing_dataset_table_is_a_clear_error(tmp_path):
    with pytest.raises(OvbenchError, match="class table of pascal-context-459 not found"):
        get_protocol("pascal-context-459", data_root=tmp_path)


def test_layouts_and_ignore_labels():
    assert get_protocol("ade-847").ignore_label == 65535
    assert get_protocol("pascal-context-459").ignore_label == 65535
    assert get_protocol("pascal-context-459").layout.labels.endswith(".tif")
    cs = get_protocol("cityscapes-19")
    assert cs.layout.label_path(Path("/d"), "frankfurt/frankfurt_000000_000294") == Path(
        "/d/cityscapes/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png")
    for pid in INLINE:
        assert get_protocol(pid).ignore_label == 255
        assert get_protocol(pid).metrics == get_protocol("synth-ov").metrics


OVR_CNN_NOVEL = {"airplane", "bus", "cat", "dog", "cow", "elephant", "umbrella", "tie", "snowboard", "skateboard",
                 "cup", "knife", "cake", "couch", "keyboard", "sink", "scissors"}
OVR_CNN_EXCLUDED = {"traffic light", "fire hydrant", "stop sign", "parking meter", "sports ball", "baseball bat",
                    "baseball glove", "tennis racket", "wine glass", "hot dog", "potted plant", "dining table",
                    "cell phone", "teddy bear", "hair drier"}


def test_coco_ovd_is_the_48_17_split_with_coco_category_ids():
    p = get_protocol("coco-ovd")
    assert (p.task, p.num_classes, p.num_base, p.num_novel) == ("detection", 65, 48, 17)
    assert {c.name for c in p.classes if c.partition == "novel"} == OVR_CNN_NOVEL
    coco = get_protocol("coco-panoptic-133")
    coco_ids = dict(zip((c.dataset_name for c in coco.classes[:80]), _definition("coco-panoptic-133")["dataset_ids"]))
    assert {c.name: c.id for c in p.classes} == {n: i for n, i in coco_ids.items() if n not in OVR_CNN_EXCLUDED}
    assert p.evaluation["max_detections"] == [100, 300] and p.ignore_label is None


def test_synth_ovd_is_synth_ov_things():
    things = [c for c in get_protocol("synth-ov").classes if c.id >= 8]
    assert list(get_protocol("synth-ovd").classes) == things


def test_detection_ids_must_increase():
    d = _definition("synth-ovd")
    d["classes"][1]["id"] = d["classes"][0]["id"]
    with pytest.raises(OvbenchError, match="increasing order"):
        protocol_from_dict(d)


def test_lvis_partition_comes_from_frequency(tmp_path):
    freqs = ["r"] * 337 + ["c"] * 461 + ["f"] * 405
    table = [{"id": i + 1, "name": f"thing {i}", "synonyms": [], "frequency": f} for i, f in enumerate(freqs)]
    (tmp_path / "lvis").mkdir()
    (tmp_path / "lvis" / "ovbench_lvis_classes.json").write_text(json.dumps(table))
    p = get_protocol("lvis-ovd", data_root=tmp_path)
    assert (p.num_base, p.num_novel) == (866, 337)
    assert {c.frequency for c in p.classes if c.partition == "novel"} == {"r"}
    assert p.hash != get_protocol("lvis-ovd").hash
