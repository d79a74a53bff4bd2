"""Row selection: which records make a leaderboard, and whether each is stale.

One row per ``(protocol, method, source)``: the latest record by timestamp (ties broken by file
path, so the choice never depends on directory order). A reproduced and a reported record of the
same method are separate rows. A row is *stale* when the protocol hash it was computed under is
not the protocol's hash today, or the protocol is no longer registered; stale rows are kept and
flagged, never dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from ovbench.errors import OvbenchError
from ovbench.protocols import Protocol, get_protocol

CURRENT, STALE, UNVERIFIED = "current", "stale", "unverified"


@dataclass(frozen=True)
class Row:
    """One leaderboard row: a selected result record and what the build knows about it."""

    protocol_id: str
    method: str
    source: str
    task: str
    record: Mapping[str, Any]
    path: str                      # record file, relative to the leaderboard root (POSIX)
    status: str                    # CURRENT, STALE or UNVERIFIED
    status_reason: str             # why STALE / UNVERIFIED; "" for CURRENT

    @property
    def stale(self) -> bool:
        return self.status == STALE

    @property
    def metrics(self) -> Mapping[str, Any]:
        return self.record.get("metrics") or {}

    @property
    def timestamp(self) -> str:
        return str(self.record.get("timestamp", ""))

    @property
    def git_commit(self) -> str | None:
        return (self.record.get("ovbench") or {}).get("git_commit")

    @property
    def citation(self) -> Mapping[str, Any]:
        return self.record.get("citation") or {}

    @property
    def citation_text(self) -> str:
        """``"paper, table"`` for reported rows; ``""`` otherwise."""
        c = self.citation
        return ", ".join(str(c[k]) for k in ("paper", "table") if c.get(k))

    @property
    def label(self) -> str:
        """``"method [source]"``: the row's name in plots and the cross-protocol overview."""
        return f"{self.method} [{self.source}]"


def time_key(timestamp: str) -> tuple[int, Any]:
    """A sort key for an ISO-8601 timestamp; unparsable ones sort first, by their text."""
    try:
        t = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return (0, str(timestamp))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return (1, t.timestamp())


def latest_per_key(records: Iterable[Mapping[str, Any]], key) -> list[Mapping[str, Any]]:
    """For each ``key(record)``, the record with the latest timestamp (ties: the larger path)."""
    best: dict[Any, Mapping[str, Any]] = {}
    for rec in records:
        k = key(rec)
        order = (time_key(str(rec.get("timestamp", ""))), str(rec.get("_path", "")))
        cur = best.get(k)
        if cur is None or order > (time_key(str(cur.get("timestamp", ""))), str(cur.get("_path", ""))):
            best[k] = rec
    return [best[k] for k in sorted(best, key=lambda x: tuple(map(str, x)))]


def current_protocol(protocol_id: str) -> Protocol | None:
    """The registered protocol, or ``None`` when it no longer exists."""
    try:
        return get_protocol(protocol_id)
    except OvbenchError:
        return None


def check_protocol(record: Mapping[str, Any], data_root: Path | None = None) -> tuple[str, str]:
    """``(status, reason)`` of a record against the protocol registered today."""
    ref = record["protocol"]
    pid, old_hash = ref["id"], ref["hash"]
    p = current_protocol(pid)
    if p is None:
        return STALE, f"protocol {pid!r} is no longer registered"
    if p.classes is None and old_hash != p.hash:
        # Not the declaration's hash: it covers a class table read from the dataset's own files.
        # (Reported records, made without the dataset, carry the declaration's hash.)
        if data_root is None:
            return UNVERIFIED, (f"{pid}'s class table comes from the dataset; pass the data root "
                                f"to check hash {old_hash}")
        try:
            p = get_protocol(pid, data_root=data_root)
        except OvbenchError as e:
            return UNVERIFIED, f"cannot load {pid}'s class table to check hash {old_hash} ({e})"
    if old_hash != p.hash:
        return STALE, (f"computed under {pid} v{ref.get('version', '?')} hash {old_hash}; "
                       f"today it is v{p.version} hash {p.hash}: re-run the evaluation")
    return CURRENT, ""


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def select_rows(records: Iterable[Mapping[str, Any]], root: Path,
                data_root: Path | None = None) -> list[Row]:
    """The leaderboard rows: latest record per ``(protocol, method, source)``, sorted by those."""
    chosen = latest_per_key(records, key=lambda r: (r["protocol"]["id"], r["method"], r["source"]))
    rows = []
    for rec in chosen:
        status, reason = check_protocol(rec, data_root)
        rows.append(Row(protocol_id=rec["protocol"]["id"], method=str(rec["method"]),
                        source=str(rec["source"]), task=str(rec["task"]), record=rec,
                        path=_relative(str(rec.get("_path", "")), root), status=status,
                        status_reason=reason))
    return rows


def device_class(record: Mapping[str, Any]) -> str:
    return str((record.get("device") or {}).get("class", "unknown"))


def select_speed(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The latest speed record per ``(method, device class)``; each must have a median latency."""
    valid = []
    for rec in records:
        median = (rec.get("latency_ms") or {}).get("median")
        if isinstance(median, bool) or not isinstance(median, (int, float)) or not median > 0:
            raise OvbenchError(f"{rec.get('_path', 'speed record')}: latency_ms.median must be a "
                               f"positive number, got {median!r}; re-run the speed measurement")
        if "method" not in rec:
            raise OvbenchError(f"{rec.get('_path', 'speed record')}: speed record lacks 'method'")
        valid.append(rec)
    return latest_per_key(valid, key=lambda r: (str(r["method"]), device_class(r)))
