"""The protocol data model: what a benchmark measures, declared as data.

A protocol is one JSON file under ``ovbench/protocols/defs/``. It names the task, the dataset
layout it reads, the split, the class table (stable integer ids, canonical names, synonyms, the
base/novel partition), the ignore label, the evaluation-resolution policy and the metric set.
Its :attr:`Protocol.hash` is the SHA-256 of the canonical JSON of that definition; every result
record carries it, so a row computed under an older definition is flagged stale.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ovbench.errors import OvbenchError

TASKS = ("semseg", "video-semseg", "detection", "video-instance")
#: Tasks scored on label maps: class ids are the pixel values 0..K-1 and an ignore label is required.
LABEL_MAP_TASKS = ("semseg", "video-semseg")
PARTITIONS = ("base", "novel")


@dataclass(frozen=True)
class ClassInfo:
    """One class of a protocol's vocabulary.

    ``id`` is the class id used in ground truth and submissions: the pixel value 0..K-1 for
    label-map tasks, the dataset's category id (e.g. COCO's 1..90, sparse) for detection;
    ``name`` is the canonical name used for prompts; ``dataset_name`` is the string the dataset
    itself uses (e.g. ``"tree-merged"``); ``synonyms`` never repeat ``name``; ``frequency`` is
    LVIS's r/c/f group where the dataset has one.
    """

    id: int
    name: str
    synonyms: tuple[str, ...] = ()
    partition: str = "base"
    dataset_name: str | None = None
    frequency: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The canonical name followed by its synonyms."""
        return (self.name, *self.synonyms)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "name": self.name, "synonyms": list(self.synonyms),
                             "partition": self.partition}
        if self.dataset_name is not None:
            d["dataset_name"] = self.dataset_name
        if self.frequency is not None:
            d["frequency"] = self.frequency
        return d


@dataclass(frozen=True)
class Layout:
    """Where a protocol's ground truth lives below ``--data-root``.

    ``images`` and ``labels`` are path templates relative to the data root in which ``{id}``
    stands for the image id (it may contain ``/``, e.g. Cityscapes' ``city/frame``).
    """

    images: str
    labels: str

    def label_path(self, data_root: Path, image_id: str) -> Path:
        return data_root / self.labels.format(id=image_id)

    def image_path(self, data_root: Path, image_id: str) -> Path:
        return data_root / self.images.format(id=image_id)


@dataclass(frozen=True)
class Protocol:
    """A loaded protocol definition. Build with :func:`ovbench.protocols.get_protocol`."""

    id: str
    version: int
    task: str
    title: str
    dataset: str
    split: str
    layout: Layout
    ignore_label: int | None
    classes: tuple[ClassInfo, ...] | None
    num_classes: int
    metrics: tuple[str, ...]
    evaluation: Mapping[str, Any]
    partition_rule: Mapping[str, Any]
    class_table: Mapping[str, Any]
    notes: str
    definition: Mapping[str, Any] = field(repr=False)

    @property
    def hash(self) -> str:
        """SHA-256 (hex, first 16 chars) of the canonical JSON of the definition."""
        return definition_hash(self.definition)

    @property
    def has_class_table(self) -> bool:
        return self.classes is not None

    def require_classes(self) -> tuple[ClassInfo, ...]:
        """The class table, or a clear error for tables read from the dataset at preparation time."""
        if self.classes is None:
            src = self.class_table
            raise OvbenchError(
                f"protocol {self.id}: its class table is read from the dataset's own files "
                f"({src.get('origin', '?')}); run `{src.get('written_by', 'ovbench data prepare')}` "
                f"and pass --data-root")
        return self.classes

    def class_ids(self, partition: str | None = None) -> list[int]:
        """Class ids, optionally only those of one partition (``base`` or ``novel``)."""
        return [c.id for c in self.require_classes() if partition is None or c.partition == partition]

    @property
    def num_base(self) -> int | None:
        return None if self.classes is None else len(self.class_ids("base"))

    @property
    def num_novel(self) -> int | None:
        return None if self.classes is None else len(self.class_ids("novel"))

    def with_classes(self, classes: Sequence[ClassInfo], source: str) -> "Protocol":
        """This protocol with a class table read from the dataset (hashed into the definition)."""
        definition = dict(self.definition)
        definition["classes"] = [c.to_dict() for c in classes]
        definition["class_table"] = {**self.class_table, "loaded_from": source}
        return protocol_from_dict(definition)

    def summary(self) -> dict[str, Any]:
        """The object ``ovbench list --json`` prints (scripts rely on these keys)."""
        return {"id": self.id, "task": self.task, "num_classes": self.num_classes,
                "num_base": self.num_base, "num_novel": self.num_novel,
                "version": self.version, "hash": self.hash}


def definition_hash(definition: Mapping[str, Any]) -> str:
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _parse_classes(raw: Sequence[Mapping[str, Any]], where: str, contiguous: bool) -> tuple[ClassInfo, ...]:
    """Classes in id order: ids 0..K-1 when ``contiguous``, else distinct and increasing."""
    classes = []
    for i, c in enumerate(raw):
        cid = c.get("id")
        if contiguous and cid != i:
            raise OvbenchError(f"{where}: class ids must be 0..K-1 in order; entry {i} has id {cid}")
        if not contiguous and (not isinstance(cid, int) or cid < 0 or (classes and cid <= classes[-1].id)):
            raise OvbenchError(f"{where}: category ids must be non-negative integers in increasing order; "
                               f"entry {i} has id {cid!r}")
        partition = c.get("partition", "base")
        if partition not in PARTITIONS:
            raise OvbenchError(f"{where}: class {i} has partition {partition!r}; use 'base' or 'novel'")
        name = str(c["name"])
        synonyms = tuple(s for s in c.get("synonyms", []) if s != name)
        classes.append(ClassInfo(id=int(cid), name=name, synonyms=synonyms, partition=partition,
                                 dataset_name=c.get("dataset_name"), frequency=c.get("frequency")))
    return tuple(classes)


def protocol_from_dict(d: Mapping[str, Any], where: str = "protocol") -> Protocol:
    """Validate and build a :class:`Protocol` from its JSON definition."""
    for key in ("id", "version", "task", "dataset", "split", "layout", "metrics"):
        if key not in d:
            raise OvbenchError(f"{where}: missing key {key!r}")
    if d["task"] not in TASKS:
        raise OvbenchError(f"{where}: task {d['task']!r} is not one of {', '.join(TASKS)}")
    label_maps = d["task"] in LABEL_MAP_TASKS
    class_table = d.get("class_table", {"source": "inline"})
    classes = _parse_classes(d["classes"], where, contiguous=label_maps) if "classes" in d else None
    if classes is None and class_table.get("source") != "dataset":
        raise OvbenchError(f"{where}: no 'classes' and class_table.source is not 'dataset'")
    num_classes = len(classes) if classes is not None else int(class_table["num_classes"])
    ignore_label = d.get("ignore_label")
    if label_maps and ignore_label is None:
        raise OvbenchError(f"{where}: missing key 'ignore_label' (required for {d['task']})")
    if label_maps and int(ignore_label) < num_classes:
        raise OvbenchError(f"{where}: ignore_label {ignore_label} collides with class ids 0..{num_classes - 1}")
    layout = Layout(images=d["layout"]["images"], labels=d["layout"]["labels"])
    return Protocol(
        id=d["id"], version=int(d["version"]), task=d["task"], title=d.get("title", d["id"]),
        dataset=d["dataset"], split=d["split"], layout=layout,
        ignore_label=None if ignore_label is None else int(ignore_label),
        classes=classes, num_classes=num_classes, metrics=tuple(d["metrics"]),
        evaluation=d.get("evaluation", {}), partition_rule=d.get("partition_rule", {"kind": "declared"}),
        class_table=class_table, notes=d.get("notes", ""), definition=dict(d))


def load_protocol_file(path: Path) -> Protocol:
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise OvbenchError(f"{path}: cannot read protocol definition ({e}); fix the JSON") from e
    return protocol_from_dict(d, where=str(path))
