"""The registry of named protocols: every ``defs/*.json`` file is one protocol."""
from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from ovbench.errors import OvbenchError
from ovbench.protocols.overlap import overlap_table
from ovbench.protocols.schema import LABEL_MAP_TASKS, ClassInfo, Protocol, load_protocol_file

DEFS_DIR = Path(__file__).parent / "defs"


@lru_cache(maxsize=None)
def _all() -> dict[str, Protocol]:
    protocols: dict[str, Protocol] = {}
    for path in sorted(DEFS_DIR.glob("*.json")):
        p = load_protocol_file(path)
        if p.id in protocols:
            raise OvbenchError(f"{path}: protocol id {p.id!r} is declared twice")
        protocols[p.id] = p
    return protocols


def protocol_ids(task: str | None = None) -> list[str]:
    """Ids of the registered protocols, optionally of one task, sorted."""
    return sorted(pid for pid, p in _all().items() if task is None or p.task == task)


def get_protocol(protocol_id: str, data_root: Path | str | None = None) -> Protocol:
    """The protocol ``protocol_id``.

    For protocols whose class table comes from the dataset's own files (ADE-847, PC-459), pass
    the ``data_root`` the preparer wrote to; the table is then read from there and hashed in.
    """
    protocols = _all()
    if protocol_id not in protocols:
        raise OvbenchError(f"unknown protocol {protocol_id!r}; `ovbench list` shows the "
                           f"registered ones: {', '.join(sorted(protocols))}")
    p = protocols[protocol_id]
    if p.classes is None and data_root is not None:
        return _with_dataset_class_table(p, Path(data_root))
    return p


def _with_dataset_class_table(p: Protocol, data_root: Path) -> Protocol:
    path = data_root / p.class_table["file"]
    if not path.is_file():
        raise OvbenchError(f"{path}: class table of {p.id} not found; run "
                           f"`{p.class_table['written_by']} --root {data_root}` first")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise OvbenchError(f"{path}: corrupt class table ({e}); re-run "
                           f"`{p.class_table['written_by']}`") from e
    if len(raw) != p.num_classes:
        raise OvbenchError(f"{path}: {len(raw)} classes, protocol {p.id} expects {p.num_classes}; "
                           f"re-run `{p.class_table['written_by']}`")
    label_maps = p.task in LABEL_MAP_TASKS
    try:
        classes = [ClassInfo(id=i if label_maps else int(c["id"]), name=c["name"],
                             synonyms=tuple(c.get("synonyms", [])), partition=c.get("partition", "novel"),
                             dataset_name=c.get("dataset_name"), frequency=c.get("frequency"))
                   for i, c in enumerate(raw)]
    except (KeyError, TypeError, ValueError) as e:
        raise OvbenchError(f"{path}: malformed class table entry ({e!r}); re-run "
                           f"`{p.class_table['written_by']}`") from e
    kind = p.partition_rule.get("kind")
    if kind == "overlap":
        classes = _overlap_partitions(classes, p.partition_rule["train_protocol"])
    elif kind == "frequency":
        novel = set(p.partition_rule["novel"])
        classes = [replace(c, partition="novel" if c.frequency in novel else "base") for c in classes]
    return p.with_classes(classes, source=str(p.class_table["file"]))


def _overlap_partitions(classes: list[ClassInfo], train_protocol: str) -> list[ClassInfo]:
    """``classes`` with partitions set by the overlap rule against ``train_protocol``'s vocabulary."""
    train = get_protocol(train_protocol).require_classes()
    rows = overlap_table(classes, train)
    return [replace(c, partition=r["partition"]) for c, r in zip(classes, rows)]
