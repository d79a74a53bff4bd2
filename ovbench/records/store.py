"""Result records on disk: one JSON file per record, written atomically, read back as dicts.

Layout below a leaderboard root (``leaderboards/`` in the repository)::

    results/<protocol>/<method>__<timestamp>__<random>.json   accuracy records
    speed/<method>__<timestamp>__<random>.json                speed records

Every record has its own file name (method, UTC time and a random suffix), so two evaluations
that record at once never overwrite each other; each file is written to a temporary name in the
same folder and renamed into place, so a reader never sees half a record.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from ovbench.errors import OvbenchError

RESULT_SCHEMA = "ovbench.result/1"
SPEED_SCHEMA = "ovbench.speed/1"
SOURCES = ("reproduced", "reported")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Create ``path`` via ``write(binary file)`` on a temporary file in the same folder, then ``os.replace``.

    The file gets the permissions a plain ``open`` would give (0666 less the umask), not the
    0600 of the temporary file, so everyone sharing a leaderboard or data root can read it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def slug(text: str) -> str:
    """A file-name-safe form of a method name: ``"GKC (R-101)"`` -> ``"GKC_R-101"``."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "unnamed"


def record_filename(method: str, timestamp: str) -> str:
    stamp = re.sub(r"[^0-9TZ]", "", timestamp)
    return f"{slug(method)}__{stamp}__{secrets.token_hex(4)}.json"


def validate_result_record(record: dict[str, Any], where: str = "record") -> None:
    """Raise :class:`OvbenchError` unless ``record`` has the fields every result record needs."""
    missing = [k for k in ("schema", "source", "method", "protocol", "task", "metrics", "timestamp")
               if k not in record]
    if missing:
        raise OvbenchError(f"{where}: result record lacks {', '.join(missing)}")
    if record["source"] not in SOURCES:
        raise OvbenchError(f"{where}: source {record['source']!r} must be one of {SOURCES}")
    if record["source"] == "reported" and not record.get("citation"):
        raise OvbenchError(f"{where}: a reported record needs a citation (paper and table)")
    for k in ("id", "version", "hash"):
        if k not in record["protocol"]:
            raise OvbenchError(f"{where}: record's protocol lacks {k!r}")


def result_record_path(root: Path, record: dict[str, Any]) -> Path:
    """A fresh, unique path for ``record`` under ``root/results/<protocol>/``."""
    return Path(root) / "results" / record["protocol"]["id"] / record_filename(record["method"], record["timestamp"])


def write_result_record(root: Path, record: dict[str, Any], path: Path | None = None) -> Path:
    """Validate ``record`` and write it atomically (at ``path``, default a fresh one); returns its path."""
    validate_result_record(record)
    path = path or result_record_path(root, record)
    atomic_write_json(path, record)
    return path


def write_speed_record(root: Path, record: dict[str, Any]) -> Path:
    """Write a speed record under ``root/speed/``; returns its path."""
    for k in ("schema", "method", "device", "latency_ms", "timestamp"):
        if k not in record:
            raise OvbenchError(f"speed record lacks {k!r}")
    path = Path(root) / "speed" / record_filename(record["method"], record["timestamp"])
    atomic_write_json(path, record)
    return path


def _read_json_files(folder: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(folder.rglob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            yield path, json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise OvbenchError(f"{path}: corrupt record ({e}); delete or restore it") from e


def load_result_records(root: Path) -> list[dict[str, Any]]:
    """Every result record under ``root/results``, each with ``_path`` added."""
    records = []
    for path, rec in _read_json_files(Path(root) / "results"):
        validate_result_record(rec, where=str(path))
        rec["_path"] = str(path)
        records.append(rec)
    return records


def load_speed_records(root: Path) -> list[dict[str, Any]]:
    """Every speed record under ``root/speed``, each with ``_path`` added."""
    records = []
    for path, rec in _read_json_files(Path(root) / "speed"):
        rec["_path"] = str(path)
        records.append(rec)
    return records
