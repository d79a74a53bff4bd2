"""Result records: atomic, concurrent-safe writing; reported-table import; provenance."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from ovbench.errors import OvbenchError
from ovbench.protocols import get_protocol
from ovbench.records import store
from ovbench.records.reported import import_reported_table
from ovbench.records.result import reported_record, reproduced_record

REPO = Path(__file__).resolve().parent.parent


def _record(method: str) -> dict:
    return reproduced_record(method, get_protocol("synth-ov"), {"mIoU": 1.0}, {"num_images": 1}, {"k": 1})


def _write_many(args: tuple[str, int]) -> list[str]:
    root, worker = args
    return [str(store.write_result_record(Path(root), _record("same-method"))) for _ in range(15)]


def test_concurrent_writers_lose_nothing(tmp_path):
    with mp.get_context("fork").Pool(6) as pool:
        paths = [p for chunk in pool.map(_write_many, [(str(tmp_path), w) for w in range(6)]) for p in chunk]
    assert len(set(paths)) == 90
    records = store.load_result_records(tmp_path)
    assert len(records) == 90
    assert not [p for p in (tmp_path / "results" / "synth-ov").iterdir() if p.name.startswith(".")]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.json"

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.atomic_write_json(target, {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_record_has_provenance():
    rec = _record("m")
    assert rec["source"] == "reproduced" and rec["protocol"]["hash"] == get_protocol("synth-ov").hash
    assert rec["ovbench"]["version"]
    assert rec["hardware"]["cpu_count"] >= 1
    assert rec["timestamp"].endswith("Z")


def test_reported_needs_citation():
    with pytest.raises(OvbenchError, match="citation"):
        reported_record("m", get_protocol("synth-ov"), {"mIoU": 1.0}, {"paper": "x"})
    rec = _record("m")
    rec["source"] = "reported"
    with pytest.raises(OvbenchError, match="citation"):
        store.validate_result_record(rec)


def test_corrupt_record_is_named(tmp_path):
    bad = tmp_path / "results" / "synth-ov" / "x.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    with pytest.raises(OvbenchError, match="x.json: corrupt record"):
        store.load_result_records(tmp_path)


def test_import_reported_table_is_idempotent(tmp_path):
    table = {"citation": {"paper": "P", "table": "Table 9"}, "metric": "mIoU", "columns": {"S": "synth-ov"},
             "rows": [{"method": "A", "values": {"S": 12.5}}, {"method": "B", "values": {"S": None}}]}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    assert len(import_reported_table(path, tmp_path / "lb")) == 1
    assert import_reported_table(path, tmp_path / "lb") == []
    (rec,) = store.load_result_records(tmp_path / "lb")
    assert rec["source"] == "reported" and rec["metrics"] == {"mIoU": 12.5}
    assert rec["citation"] == {"paper": "P", "table": "Table 9", "column": "S"}


def test_shipped_gkc_table1_records_match_the_transcription():
    table = json.loads((REPO / "leaderboards/reported/gkc-table1.json").read_text())
    records = [r for r in store.load_result_records(REPO / "leaderboards")
               if r["source"] == "reported" and r["citation"]["table"] == "Table 1"
               and "Global Knowledge Calibration" in r["citation"]["paper"]]
    expected = {(row["method"], table["columns"][c], v) for row in table["rows"]
                for c, v in row["values"].items() if v is not None}
    got = {(r["method"], r["protocol"]["id"], r["metrics"]["mIoU"]) for r in records}
    assert got == expected
    assert ("GKC (CLIP R-50)", "ade-150", 17.5) in got
