"""Reported tables with several metrics per protocol, and detection leaderboards (COCO and LVIS style)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ovbench.errors import OvbenchError
from ovbench.leaderboard import build_leaderboards
from ovbench.leaderboard.columns import TASK_VIEWS, view_for
from ovbench.protocols import get_protocol
from ovbench.records.reported import import_reported_table
from ovbench.records.store import load_result_records, write_result_record

CITATION = {"paper": "Someone et al., A Detector, 2030", "table": "Table 2", "url": "https://example.org/d"}


def write_table(path: Path, columns: dict[str, Any], rows: list[dict[str, Any]], **extra) -> Path:
    path.write_text(json.dumps({"citation": CITATION, "columns": columns, "rows": rows, **extra}))
    return path


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """A paper table mixing COCO-style box metrics, an LVIS column and a semseg column."""
    return write_table(tmp_path / "t.json", {
        "Novel": {"protocol": "coco-ovd", "metric": "bbox.AP50_novel@100"},
        "Base": {"protocol": "coco-ovd", "metric": "bbox.AP50_base@100"},
        "Mask novel": {"protocol": "coco-ovd", "metric": "segm.AP50_novel@100"},
        "LVIS APr": {"protocol": "lvis-ovd", "metric": "segm.APr@300"},
        "ADE-150": "ade-150",
    }, [
        {"method": "Det A", "config": {"backbone": "R50"},
         "values": {"Novel": 30.25, "Base": 55, "Mask novel": 25.0, "LVIS APr": 17.5, "ADE-150": 12.0}},
        {"method": "Det B", "values": {"Novel": 20.0, "Base": None, "LVIS APr": None}},
    ], metric="mIoU")


def test_multi_metric_row_gives_one_nested_record_per_protocol(table: Path, tmp_path: Path) -> None:
    root = tmp_path / "lb"
    written = import_reported_table(table, root)
    assert len(written) == 4                              # Det A: coco, lvis, ade; Det B: coco
    recs = {(r["method"], r["protocol"]["id"]): r for r in load_result_records(root)}
    coco = recs[("Det A", "coco-ovd")]
    assert coco["metrics"] == {"bbox": {"AP50_novel@100": 30.25, "AP50_base@100": 55.0},
                               "segm": {"AP50_novel@100": 25.0}}
    assert coco["citation"] == {**CITATION, "columns": ["Novel", "Base", "Mask novel"]}
    assert coco["task"] == "detection" and coco["config"] == {"backbone": "R50"}
    assert coco["protocol"]["hash"] == get_protocol("coco-ovd").hash
    assert recs[("Det A", "lvis-ovd")]["metrics"] == {"segm": {"APr@300": 17.5}}
    assert recs[("Det A", "lvis-ovd")]["citation"]["column"] == "LVIS APr"
    assert recs[("Det A", "ade-150")]["metrics"] == {"mIoU": 12.0}      # plain column: table metric
    assert recs[("Det B", "coco-ovd")]["metrics"] == {"bbox": {"AP50_novel@100": 20.0}}
    assert ("Det B", "lvis-ovd") not in recs                            # only nulls: no record


def test_reimport_writes_nothing(table: Path, tmp_path: Path) -> None:
    root = tmp_path / "lb"
    assert len(import_reported_table(table, root)) == 4
    assert import_reported_table(table, root) == []
    assert len(load_result_records(root)) == 4


def test_table_metric_optional_when_every_column_names_its_own(tmp_path: Path) -> None:
    t = write_table(tmp_path / "t.json", {"APr": {"protocol": "lvis-ovd", "metric": "bbox.APr@300"}},
                    [{"method": "X", "values": {"APr": 10.0}}])
    assert len(import_reported_table(t, tmp_path / "lb")) == 1


@pytest.mark.parametrize("columns, message", [
    ({"A": "no-such-protocol"}, r"column 'A': unknown protocol 'no-such-protocol'"),
    ({"A": {"protocol": "nope", "metric": "bbox.AP50_all@100"}}, r"unknown protocol 'nope'"),
    ({"A": {"protocol": "coco-ovd"}}, r"column 'A': must be a protocol id or"),
    ({"A": {"protocol": "coco-ovd", "metric": "bbox.AP50_all@100", "extra": 1}}, "must be a protocol id or"),
    ({"A": 5}, r"must be a protocol id or"),
    ({"A": {"protocol": "coco-ovd", "metric": "bbox..AP"}}, r"metric a dotted path"),
    ({"A": {"protocol": "coco-ovd", "metric": 3}}, r"metric a dotted path"),
    ({"A": {"protocol": "coco-ovd", "metric": "AP50_all@100"}}, r"must start with an IoU type of coco-ovd"),
    ({"A": {"protocol": "coco-ovd", "metric": "bbox.AP50_all"}}, r"per-image detection cap.*@100, @300"),
    ({"A": {"protocol": "lvis-ovd", "metric": "segm.APr@100"}}, r"one of lvis-ovd's: @300"),
    ({"A": "coco-ovd"}, r"must start with an IoU type"),                   # table metric "mIoU"
])
def test_bad_column_spec_is_one_line_error(tmp_path: Path, columns: dict, message: str) -> None:
    t = write_table(tmp_path / "t.json", columns, [{"method": "X", "values": {"A": 1.0}}], metric="mIoU")
    with pytest.raises(OvbenchError, match=message) as e:
        import_reported_table(t, tmp_path / "lb")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "lb").exists()                                 # nothing written


def test_plain_column_without_table_metric(tmp_path: Path) -> None:
    t = write_table(tmp_path / "t.json", {"A": "ade-150"}, [{"method": "X", "values": {"A": 1.0}}])
    with pytest.raises(OvbenchError, match="names only a protocol .* no 'metric'"):
        import_reported_table(t, tmp_path / "lb")


@pytest.mark.parametrize("columns, values, message", [
    ({"A": {"protocol": "coco-ovd", "metric": "bbox.AP50_all@100"},
      "B": {"protocol": "coco-ovd", "metric": "bbox.AP50_all@100"}}, {"A": 1.0, "B": 2.0}, "clashes"),
    ({"A": {"protocol": "lvis-ovd", "metric": "segm.AP@300"}}, {"A": "12.5"}, "must be a number or null"),
    ({"A": {"protocol": "lvis-ovd", "metric": "segm.AP@300"}}, {"Z": 1.0}, "column 'Z' not in 'columns'"),
])
def test_bad_rows_are_one_line_errors(tmp_path: Path, columns: dict, values: dict, message: str) -> None:
    t = write_table(tmp_path / "t.json", columns, [{"method": "X", "values": values}])
    with pytest.raises(OvbenchError, match=message) as e:
        import_reported_table(t, tmp_path / "lb")
    assert "\n" not in str(e.value)


def test_not_a_table(tmp_path: Path) -> None:
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"citation": {}, "columns": [], "rows": []}))
    with pytest.raises(OvbenchError, match="not a reported table"):
        import_reported_table(p, tmp_path / "lb")


# --- detection leaderboards -------------------------------------------------------------------

def coco_metrics(novel100: float, novel300: float | None = None) -> dict[str, Any]:
    """COCO-style metrics at both caps, with per-class tables as ovbench's evaluator writes them."""
    out: dict[str, Any] = {}
    for iou, shift in (("bbox", 0.0), ("segm", -3.0)):
        m: dict[str, Any] = {}
        for cap, novel in ((100, novel100), (300, novel300 if novel300 is not None else novel100 + 1)):
            for name in ("AP", "AP50", "AP75"):
                m.update({f"{name}_novel@{cap}": novel + shift, f"{name}_base@{cap}": 50.0 + shift,
                          f"{name}_all@{cap}": 45.0 + shift})
            m.update({f"APs_all@{cap}": 10.0, f"APm_all@{cap}": 20.0, f"APl_all@{cap}": None,
                      f"AP_per_class@{cap}": {"1": 40.0, "5": None, "90": 12.5}})
        out[iou] = m
    return out


def lvis_metrics(apr: float) -> dict[str, Any]:
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APc", "APf")
    return {iou: {**{f"{n}@300": 20.0 + shift for n in names}, "APr@300": apr + shift,
                  "AP_per_class@300": {"1": 3.0, "1203": 9.0}}
            for iou, shift in (("bbox", 2.0), ("segm", 0.0))}


def record(method: str, protocol: str, metrics: dict, *, source: str = "reproduced",
           hash_: str | None = None) -> dict[str, Any]:
    rec = {"schema": "ovbench.result/1", "source": source, "method": method,
           "protocol": {"id": protocol, "version": 1, "hash": hash_ or get_protocol(protocol).hash},
           "task": "detection", "metrics": metrics, "config": {},
           "ovbench": {"version": "0.1.0", "git_commit": "0123abcd", "git_dirty": False},
           "inputs": {"num_images": 10}, "timestamp": "2026-11-24T10:00:00.000000Z"}
    if source == "reported":
        rec["citation"] = CITATION
    return rec


@pytest.fixture
def det_root(tmp_path: Path) -> Path:
    root = tmp_path / "lb"
    write_result_record(root, record("Low", "coco-ovd", coco_metrics(10.0, 40.0)))
    write_result_record(root, record("High", "coco-ovd", coco_metrics(30.0, 31.0)))
    write_result_record(root, record("Cap300only", "coco-ovd",
                                     {"bbox": {"AP50_novel@300": 99.0, "AP50_all@300": 60.0}},
                                     source="reported"))
    write_result_record(root, record("L1", "lvis-ovd", lvis_metrics(15.0), hash_="a" * 16))
    write_result_record(root, record("L2", "lvis-ovd", {"segm": {"APr@300": 18.0}}, source="reported"))
    return root


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def test_view_chosen_by_evaluation_style() -> None:
    assert view_for("detection", [], style="coco") is TASK_VIEWS["detection:coco"]
    assert view_for("detection", [], style="lvis") is TASK_VIEWS["detection:lvis"]
    assert view_for("semseg", [], style="whatever") is TASK_VIEWS["semseg"]
    generic = view_for("detection", [{"bbox": {"AP": 1.0}}], style=None)
    assert [c.key for c in generic.columns] == ["bbox.AP"]
    for pid, key in (("coco-ovd", "detection:coco"), ("synth-ovd", "detection:coco"),
                     ("lvis-ovd", "detection:lvis")):
        p = get_protocol(pid)
        assert f"{p.task}:{p.evaluation['style']}" == key


def test_coco_style_leaderboard(det_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build_leaderboards(det_root, out, protocol="coco-ovd")
    text = (out / "coco-ovd.md").read_text()
    lines = table_lines(text)
    assert lines[0] == ("| method | source | AP50 novel @100 (box) | AP50 base @100 (box) | AP50 all @100 (box) "
                        "| AP50 novel @300 (box) | AP50 base @300 (box) | AP50 all @300 (box) "
                        "| AP50 novel @100 (mask) | AP50 all @100 (mask) | AP50 novel @300 (mask) "
                        "| AP50 all @300 (mask) | stale | citation |")
    # Sorted by box AP50 novel @100: a row without it goes last, whatever its @300 value.
    assert lines[2:] == [
        "| High | reproduced | 30.0 | 50.0 | 45.0 | 31.0 | 50.0 | 45.0 | 27.0 | 42.0 | 28.0 | 42.0 | no | – |",
        "| Low | reproduced | 10.0 | 50.0 | 45.0 | 40.0 | 50.0 | 45.0 | 7.0 | 42.0 | 37.0 | 42.0 | no | – |",
        "| Cap300only | reported | – | – | – | 99.0 | – | 60.0 | – | – | – | – | no | "
        "Someone et al., A Detector, 2030, Table 2 |",
    ]
    assert "Sorted by box AP50 novel @100" in text and "numbers at different caps are not comparable" in text
    assert (out / "plots" / "coco-ovd__base-novel.png").is_file()
    df = pd.read_csv(out / "coco-ovd.csv")
    assert df["method"].tolist() == ["High", "Low", "Cap300only"]
    assert "bbox.APs_all@100" in df.columns and "segm.AP75_base@300" in df.columns   # extras kept
    assert not [c for c in df.columns if "per_class" in c]                          # tables skipped


def test_mask_columns_are_optional(tmp_path: Path) -> None:
    root = tmp_path / "lb"
    write_result_record(root, record("BoxOnly", "synth-ovd", {"bbox": coco_metrics(5.0)["bbox"]}))
    build_leaderboards(root, tmp_path / "out")
    header = table_lines((tmp_path / "out" / "synth-ovd.md").read_text())[0]
    assert "(box)" in header and "(mask)" not in header


def test_lvis_style_leaderboard_without_data_root(det_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = build_leaderboards(det_root, out, protocol="lvis-ovd")
    text = (out / "lvis-ovd.md").read_text()
    assert text.splitlines()[0].endswith("detection, 1203 classes (class table and partition read from the dataset)")
    lines = table_lines(text)
    assert lines[0] == ("| method | source | APr @300 (mask) | APc @300 (mask) | APf @300 (mask) | AP @300 (mask) "
                        "| APr @300 (box) | AP @300 (box) | stale | citation |")
    assert lines[2:] == [
        "| L2 | reported | 18.0 | – | – | – | – | – | no | Someone et al., A Detector, 2030, Table 2 |",
        "| L1 | reproduced | 15.0 | 20.0 | 20.0 | 20.0 | 17.0 | 22.0 | ? unverified | – |",
    ]
    # The reproduced row was scored with the dataset's class table: unverified without it.
    assert (report.unverified_rows, report.stale_rows) == (1, 0)
    assert report.plots == []                                                       # no base-novel plot
    df = pd.read_csv(out / "lvis-ovd.csv")
    assert "segm.AP50@300" in df.columns and not [c for c in df.columns if "per_class" in c]
