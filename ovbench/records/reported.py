"""Importing numbers reported in papers as ``source: reported`` records.

A reported table is a JSON file (kept under ``leaderboards/reported/``) transcribing one paper
table::

    {"citation": {"paper": "...", "table": "Table 1", "url": "..."},
     "metric": "mIoU",
     "columns": {"ADE20K-150": "ade-150", ...},          # paper column -> protocol id
     "rows": [{"method": "GKC (CLIP R-50)", "config": {...}, "values": {"ADE20K-150": 17.5, ...}}]}

Each (row, column) with a number becomes one record. Importing the same table twice writes
nothing new.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ovbench.errors import OvbenchError
from ovbench.protocols import get_protocol
from ovbench.records.result import reported_record
from ovbench.records.store import load_result_records, write_result_record


def _key(method: str, protocol_id: str, metrics: dict[str, Any], citation: dict[str, Any]) -> str:
    return json.dumps([method, protocol_id, metrics, citation], sort_keys=True)


def import_reported_table(table_path: Path, root: Path) -> list[Path]:
    """Write one reported record per number of the table at ``table_path``; returns new paths."""
    try:
        table = json.loads(Path(table_path).read_text())
        citation, metric, columns = table["citation"], table["metric"], table["columns"]
        rows = table["rows"]
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise OvbenchError(f"{table_path}: not a reported table ({e}); see ovbench.records.reported for the "
                           f"format") from e
    existing = {_key(r["method"], r["protocol"]["id"], r["metrics"], r.get("citation", {}))
                for r in (load_result_records(root) if (Path(root) / "results").is_dir() else [])
                if r["source"] == "reported"}
    written = []
    for row in rows:
        for column, value in row["values"].items():
            if column not in columns:
                raise OvbenchError(f"{table_path}: row {row['method']!r} has column {column!r} not in 'columns'")
            if value is None:
                continue
            protocol = get_protocol(columns[column])
            metrics = {metric: float(value)}
            cite = {**citation, "column": column}
            if _key(row["method"], protocol.id, metrics, cite) in existing:
                continue
            record = reported_record(row["method"], protocol, metrics, cite, config=row.get("config"))
            written.append(write_result_record(root, record))
    return written
