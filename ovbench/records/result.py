"""Building result records (the JSON that leaderboards are made of) from an evaluation."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ovbench.errors import OvbenchError
from ovbench.protocols.schema import Protocol
from ovbench.records.provenance import code_version, hardware, utc_timestamp
from ovbench.records.store import RESULT_SCHEMA, result_record_path, write_result_record

PER_IMAGE_SUFFIX = ".per_image.npz"


def protocol_ref(protocol: Protocol) -> dict[str, Any]:
    return {"id": protocol.id, "version": protocol.version, "hash": protocol.hash}


def reproduced_record(method: str, protocol: Protocol, metrics: Mapping[str, Any], inputs: Mapping[str, Any],
                      config: Mapping[str, Any] | None = None,
                      evaluation: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ``source: reproduced`` record with full provenance (code, hardware, time, digests).

    ``evaluation`` says how the metrics were computed where a protocol allows choices (e.g.
    the AP backend and its version, any truncation applied).
    """
    record = {"schema": RESULT_SCHEMA, "source": "reproduced", "method": method,
              "protocol": protocol_ref(protocol), "task": protocol.task, "metrics": dict(metrics),
              "config": dict(config or {}), "ovbench": code_version(), "inputs": dict(inputs),
              "timestamp": utc_timestamp(), "hardware": hardware()}
    if evaluation:
        record["evaluation"] = dict(evaluation)
    return record


def reported_record(method: str, protocol: Protocol, metrics: Mapping[str, Any], citation: Mapping[str, Any],
                    config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ``source: reported`` record: numbers from a paper, with its citation (paper, table)."""
    if not citation.get("paper") or not citation.get("table"):
        raise OvbenchError(f"reported record for {method} on {protocol.id}: citation needs 'paper' and 'table'")
    return {"schema": RESULT_SCHEMA, "source": "reported", "method": method,
            "protocol": protocol_ref(protocol), "task": protocol.task, "metrics": dict(metrics),
            "config": dict(config or {}), "citation": dict(citation), "ovbench": code_version(),
            "timestamp": utc_timestamp()}


def save_per_image(json_path: Path, image_ids: list[str], per_image: np.ndarray) -> str:
    """Write per-image statistics beside ``json_path``; returns the side file's name."""
    stem = json_path.name[: -len(".json")] if json_path.name.endswith(".json") else json_path.name
    path = json_path.with_name(stem + PER_IMAGE_SUFFIX)
    tmp = path.with_name("." + path.name + ".tmp.npz")
    np.savez_compressed(tmp, image_ids=np.asarray(image_ids), stats=per_image.astype(np.int64))
    tmp.replace(path)
    return path.name


def load_per_image(json_path: Path, result: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """The per-image statistics a result JSON points to: ``(image_ids, (N, 3, K) array)``."""
    name = result.get("per_image_file")
    if not name:
        raise OvbenchError(f"{json_path}: has no per-image statistics; re-run `ovbench evaluate` with --out "
                           f"or --record to write them")
    path = json_path.parent / name
    try:
        with np.load(path) as z:
            return [str(i) for i in z["image_ids"]], z["stats"]
    except (OSError, KeyError, ValueError) as e:
        raise OvbenchError(f"{path}: per-image statistics unreadable ({e}); re-run `ovbench evaluate`") from e


def write_record_with_per_image(root: Path, record: dict[str, Any], image_ids: list[str] | None,
                                per_image: np.ndarray | None) -> Path:
    """Write ``record`` (and its per-image side file, when given) under ``root``.

    The side file is written first, so a record never points at a missing file.
    """
    path = result_record_path(root, record)
    if per_image is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        record["per_image_file"] = save_per_image(path, image_ids or [], per_image)
    return write_result_record(root, record, path)
