"""Leakage audit: name / synonym / WordNet-synset levels, the committed audit tables, and mIoU_unseen."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import save_label
from ovbench.cli import audit_cmd, main
from ovbench.evaluation.semseg import evaluate_semseg_submission
from ovbench.metrics.confusion import LabelRuns
from ovbench.metrics.semseg import semseg_metrics
from ovbench.protocols import ClassInfo, get_protocol
from ovbench.protocols.audit import audit, audit_rows, unseen_class_ids
from ovbench.protocols.overlap import overlap_table
from ovbench.protocols.registry import DEFS_DIR
from ovbench.protocols.schema import protocol_from_dict

AUDITS = Path(__file__).resolve().parents[1] / "leaderboards" / "audits"
SHIPPED = ["ade-150", "pascal-context-59", "pascal-voc-20", "cityscapes-19"]
TRAIN = "coco-panoptic-133"


def _classes(*entries: tuple[str, tuple[str, ...]]) -> tuple[ClassInfo, ...]:
    return tuple(ClassInfo(id=i, name=n, synonyms=s) for i, (n, s) in enumerate(entries))


def test_levels_on_a_toy_vocabulary():
    train = _classes(("couch", ()), ("car", ()), ("person", ("people",)), ("traffic light", ()))
    test = _classes(("Couch", ()), ("sofa", ("couch",)), ("lounge", ()), ("automobile", ()), ("stoplight", ()),
                    ("zz gadget", ()))
    rows = audit_rows(test, train)
    assert [r.level for r in rows] == ["name", "synonym", "synset", "synset", "synset", "unseen"]
    assert rows[0].shared["name"] == {"couch": ("couch",)}
    assert rows[1].shared["name"] == {} and rows[1].shared["synonym"] == {"couch": ("couch",)}
    assert rows[2].shared["synset"] == {"sofa.n.01": ("couch",)}          # couch = sofa = lounge
    assert rows[3].shared["synset"] == {"car.n.01": ("car",)}
    assert rows[4].shared["synset"] == {"traffic_light.n.01": ("traffic light",)}   # multi-word names use '_'
    assert rows[5].shared == {"name": {}, "synonym": {}, "synset": {}}
    assert [r.rule_partition for r in rows] == [r["partition"] for r in overlap_table(test, train)]


@pytest.mark.parametrize("pid", SHIPPED)
def test_shipped_partitions_are_the_audits_name_or_synonym_result(pid):
    result = audit(get_protocol(pid), get_protocol(TRAIN))
    assert result.compares_partitions and result.partition_mismatches == []
    assert [r.partition for r in result.rows] == [c.partition for c in get_protocol(pid).require_classes()]
    counts = result.counts()
    assert counts["name"] + counts["synonym"] == get_protocol(pid).num_base
    assert counts["synset"] + counts["unseen"] == get_protocol(pid).num_novel
    assert unseen_class_ids(get_protocol(pid)) == result.ids("unseen")


def test_cityscapes_counts():
    assert audit(get_protocol("cityscapes-19"), get_protocol(TRAIN)).counts() == {
        "classes": 19, "name": 14, "synonym": 0, "synset": 0, "unseen": 5}
    assert unseen_class_ids(get_protocol("cityscapes-19")) == [5, 7, 8, 9, 12]   # pole, traffic sign, ... rider
    assert unseen_class_ids(get_protocol("synth-ov")) is None                   # declared partition


@pytest.mark.parametrize("pid", SHIPPED)
def test_committed_audit_regenerates(pid, tmp_path, capsys):
    assert main(["audit", "--train", TRAIN, "--test", pid, "--out", str(tmp_path)]) == 0
    counts = json.loads((tmp_path / f"{pid}__vs__{TRAIN}.json").read_text())["counts"]
    assert capsys.readouterr().out.startswith(
        f"{pid} vs {TRAIN}: {counts['classes']} classes; shared by name {counts['name']}, by synonym only "
        f"{counts['synonym']}, by synset only {counts['synset']}; unseen {counts['unseen']}; "
        f"stored partitions = name or synonym shared")
    for suffix in (".md", ".json"):
        name = f"{pid}__vs__{TRAIN}{suffix}"
        assert (tmp_path / name).read_text() == (AUDITS / name).read_text(), \
            f"{AUDITS / name} is stale: run `ovbench audit --train {TRAIN} --test {pid}`"


def test_a_wrong_stored_partition_is_reported_and_exits_1(monkeypatch, tmp_path, capsys):
    d = json.loads((DEFS_DIR / "cityscapes-19.json").read_text())
    d = copy.deepcopy(d)
    d["classes"][5]["partition"] = "base"                       # pole shares nothing with COCO
    edited = protocol_from_dict(d)
    assert [r.id for r in audit(edited, get_protocol(TRAIN)).partition_mismatches] == [5]
    monkeypatch.setattr(audit_cmd, "get_protocol",
                        lambda pid, data_root=None: edited if pid == "cityscapes-19" else get_protocol(pid))
    assert main(["audit", "--train", TRAIN, "--test", "cityscapes-19", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "1 stored partition(s) differ from the overlap rule" in out and "5 pole" in out
    assert json.loads((tmp_path / f"cityscapes-19__vs__{TRAIN}.json").read_text())["partition_check"][
        "mismatches"] == [5]


def test_dataset_sourced_table_needs_the_data_root(tmp_path, capsys):
    assert main(["audit", "--train", TRAIN, "--test", "ade-847", "--out", str(tmp_path)]) == 2
    assert "pass --data-root" in capsys.readouterr().err
    table = [{"name": f"zz object {i}", "synonyms": []} for i in range(847)]
    table[0], table[1], table[2] = {"name": "wall"}, {"name": "zz seat", "synonyms": ["couch"]}, {"name": "lounge"}
    path = tmp_path / get_protocol("ade-847").class_table["file"]
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(table))
    assert main(["audit", "--train", TRAIN, "--test", "ade-847", "--data-root", str(tmp_path),
                 "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / f"ade-847__vs__{TRAIN}.json").read_text())
    assert result["counts"] == {"classes": 847, "name": 1, "synonym": 1, "synset": 1, "unseen": 844}
    assert result["partition_check"]["mismatches"] == []


def test_miou_unseen_metric():
    gt = np.array([[0, 0, 1, 1], [2, 2, 3, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 3]], np.uint8)
    stats = LabelRuns.encode(pred, gt).confusion(5, 255).per_class()
    m = semseg_metrics(stats, [0, 1], [2, 3, 4], unseen_ids=[2, 4])
    assert m["mIoU_unseen"] == pytest.approx(50.0) and m["num_unseen_classes"] == 2   # class 4 has no GT
    assert m["mIoU_unseen"] == pytest.approx(float(m["IoU"]["2"]))
    assert semseg_metrics(stats, [0, 1], [2, 3, 4], unseen_ids=[4])["mIoU_unseen"] is None
    assert "mIoU_unseen" not in semseg_metrics(stats, [0, 1], [2, 3, 4])


def test_evaluating_an_overlap_protocol_reports_miou_unseen(tmp_path):
    protocol = get_protocol("cityscapes-19")
    unseen = [5, 7, 8, 9, 12]
    rng = np.random.default_rng(0)
    for i in range(2):
        image_id = f"frankfurt/frankfurt_000000_00000{i}"
        gt = rng.integers(0, 19, (6, 8)).astype(np.uint8)
        save_label(protocol.layout.label_path(tmp_path, image_id), gt)
        save_label(tmp_path / "pred" / f"{image_id}.png", np.where(rng.random(gt.shape) < 0.6, gt, 0))
    m = evaluate_semseg_submission(protocol, tmp_path / "pred", tmp_path, workers=1, progress=False).metrics
    assert m["num_unseen_classes"] == 5
    unseen_ious = [m["IoU"][str(c)] for c in unseen if m["IoU"][str(c)] is not None]
    assert len(unseen_ious) == 5 and m["mIoU_unseen"] == pytest.approx(np.mean(unseen_ious))
    before = audit_rows.cache_info().hits
    evaluate_semseg_submission(protocol, tmp_path / "pred", tmp_path, workers=1, progress=False)
    assert audit_rows.cache_info().hits == before + 1            # the audit is computed once per class-table pair
