"""Importing numbers reported in papers as ``source: reported`` records.

A reported table is a JSON file (kept under ``leaderboards/reported/``) transcribing one paper
table::

    {"citation": {"paper": "...", "table": "Table 1", "url": "...", "note": "..."},
     "metric": "mIoU",                                    # the table-level metric (optional)
     "columns": {"ADE20K-150": "ade-150",                 # paper column -> protocol id
                 "APr": {"protocol": "lvis-ovd", "metric": "segm.APr@300"}, ...},
     "rows": [{"method": "GKC (CLIP R-50)", "config": {...}, "values": {"ADE20K-150": 17.5, ...}}]}

A column is either a protocol id (its numbers are the table-level ``metric``) or an object
naming the protocol and the metric's path, dotted into nested keys (``"bbox.AP50_novel@100"``
is ``metrics["bbox"]["AP50_novel@100"]``). Where a protocol declares IoU types or per-image
detection caps (``evaluation.iou_types`` / ``max_detections``), the path must name one of each.

Each row gives one record per protocol with a number: every column of that protocol with a
(non-null) value in the row goes into the record's metrics. The record's citation is the
table's, plus ``column`` (the one paper column) or ``columns`` (several, in table order).
Importing the same table twice writes nothing new.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ovbench.errors import OvbenchError
from ovbench.protocols import Protocol, get_protocol
from ovbench.records.result import reported_record
from ovbench.records.store import load_result_records, write_result_record

CAP = re.compile(r"@(\d+)$")


@dataclass(frozen=True)
class ColumnSpec:
    """Where one paper column's numbers go: a protocol and a metric path inside ``metrics``."""

    protocol: Protocol
    path: tuple[str, ...]


def _key(method: str, protocol_id: str, metrics: dict[str, Any], citation: dict[str, Any]) -> str:
    return json.dumps([method, protocol_id, metrics, citation], sort_keys=True)


def _check_path(where: str, protocol: Protocol, path: tuple[str, ...]) -> None:
    """IoU type and detection cap of ``path`` must be ones ``protocol`` evaluates."""
    ev = protocol.evaluation
    iou_types, caps = ev.get("iou_types"), ev.get("max_detections")
    if iou_types and (len(path) < 2 or path[0] not in iou_types):
        raise OvbenchError(f"{where}: metric {'.'.join(path)!r} must start with an IoU type of "
                           f"{protocol.id} ({', '.join(iou_types)}), e.g. '{iou_types[0]}.AP'")
    cap = CAP.search(path[-1])
    if caps and (cap is None or int(cap.group(1)) not in caps):
        raise OvbenchError(f"{where}: metric {'.'.join(path)!r} must end with the per-image "
                           f"detection cap it was computed at, one of {protocol.id}'s: "
                           f"{', '.join(f'@{c}' for c in caps)}")


def _column_spec(where: str, spec: Any, table_metric: Any) -> ColumnSpec:
    """Parse one entry of ``columns``; ``where`` names it in errors."""
    if isinstance(spec, str):
        if not isinstance(table_metric, str) or not table_metric:
            raise OvbenchError(f"{where}: names only a protocol ({spec!r}) and the table has no "
                               f"'metric'; give {{\"protocol\": ..., \"metric\": ...}} instead")
        protocol_id, metric = spec, table_metric
    elif isinstance(spec, Mapping) and set(spec) == {"protocol", "metric"}:
        protocol_id, metric = spec["protocol"], spec["metric"]
    else:
        raise OvbenchError(f"{where}: must be a protocol id or {{\"protocol\": ..., \"metric\": ...}}, "
                           f"got {json.dumps(spec)}")
    if not isinstance(protocol_id, str) or not isinstance(metric, str) or "" in metric.split("."):
        raise OvbenchError(f"{where}: protocol must be an id and metric a dotted path such as "
                           f"'bbox.AP50_novel@100', got {json.dumps(spec)}")
    try:
        protocol = get_protocol(protocol_id)
    except OvbenchError as e:
        raise OvbenchError(f"{where}: {e}") from None
    path = tuple(metric.split("."))
    _check_path(where, protocol, path)
    return ColumnSpec(protocol, path)


def _set(metrics: dict[str, Any], path: tuple[str, ...], value: float, where: str) -> None:
    """``metrics[path[0]]...[path[-1]] = value``, refusing to overwrite or nest under a number."""
    node = metrics
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            break
    else:
        if path[-1] not in node:
            node[path[-1]] = value
            return
    raise OvbenchError(f"{where}: metric {'.'.join(path)!r} clashes with another column of the "
                       f"same protocol")


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OvbenchError(f"{where}: value must be a number or null, got {json.dumps(value)}")
    return float(value)


def _load(table_path: Path) -> dict[str, Any]:
    try:
        table = json.loads(Path(table_path).read_text())
        if not (isinstance(table["citation"], dict) and isinstance(table["columns"], dict)
                and isinstance(table["rows"], list)):
            raise TypeError("'citation' and 'columns' must be objects, 'rows' a list")
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise OvbenchError(f"{table_path}: not a reported table ({e}); see ovbench.records.reported "
                           f"for the format") from e
    return table


def _row_records(table_path: Path, row: Mapping[str, Any],
                 specs: Mapping[str, ColumnSpec]) -> dict[str, tuple[Protocol, dict[str, Any], list[str]]]:
    """For one row: protocol id -> (protocol, nested metrics, the paper columns they came from)."""
    out: dict[str, tuple[Protocol, dict[str, Any], list[str]]] = {}
    values = row["values"]
    for column in specs:                                  # table order, not the row's
        if values.get(column) is None:
            continue
        where = f"{table_path}: row {row['method']!r}, column {column!r}"
        spec = specs[column]
        _, metrics, columns = out.setdefault(spec.protocol.id, (spec.protocol, {}, []))
        _set(metrics, spec.path, _number(where, values[column]), where)
        columns.append(column)
    return out


def import_reported_table(table_path: Path, root: Path) -> list[Path]:
    """Write one reported record per (row, protocol) of the table at ``table_path``; returns new paths."""
    table = _load(table_path)
    citation, rows = table["citation"], table["rows"]
    specs = {column: _column_spec(f"{table_path}: column {column!r}", spec, table.get("metric"))
             for column, spec in table["columns"].items()}
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("method"), str) \
                or not isinstance(row.get("values"), dict):
            raise OvbenchError(f"{table_path}: each row needs a 'method' string and a 'values' object, "
                               f"got {json.dumps(row)[:120]}")
        unknown = sorted(set(row["values"]) - set(specs))
        if unknown:
            raise OvbenchError(f"{table_path}: row {row['method']!r} has column {unknown[0]!r} not in 'columns'")
    existing = {_key(r["method"], r["protocol"]["id"], r["metrics"], r.get("citation", {}))
                for r in (load_result_records(root) if (Path(root) / "results").is_dir() else [])
                if r["source"] == "reported"}
    written = []
    for row in rows:
        for protocol, metrics, columns in _row_records(table_path, row, specs).values():
            cite = {**citation, **({"column": columns[0]} if len(columns) == 1 else {"columns": columns})}
            if _key(row["method"], protocol.id, metrics, cite) in existing:
                continue
            record = reported_record(row["method"], protocol, metrics, cite, config=row.get("config"))
            written.append(write_result_record(root, record))
    return written
