"""Ground truth of a detection protocol: one COCO- or LVIS-format annotation JSON below ``--data-root``.

The file is the protocol's ``layout.labels`` path. Its categories must be exactly the
protocol's classes (same ids; names equal to the class's ``dataset_name`` or ``name``; for LVIS
the rare classes are the protocol's novel ones), so a result is never scored against a
different vocabulary than the one its record names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovbench.data.annotation_json import read_annotation_json
from ovbench.errors import OvbenchError, ValidationError
from ovbench.protocols.schema import Protocol

FEDERATED_KEYS = ("neg_category_ids", "not_exhaustive_category_ids")


def preparation_hint(protocol: Protocol) -> str:
    """The command (or download) that puts this protocol's annotation file in place."""
    if protocol.id.startswith("synth-"):
        return "run `ovbench data synth --out DIR` and pass --data-root DIR"
    if protocol.evaluation.get("style") == "lvis":
        return ("put the official lvis_v1_val.json (lvisdataset.org) in DIR/lvis/, run "
                "`ovbench data prepare lvis --root DIR` and pass --data-root DIR")
    return f"run `ovbench data prepare {protocol.id} --root DIR` and pass --data-root DIR"


@dataclass
class DetectionGroundTruth:
    """A protocol's annotation file, loaded and checked against the protocol.

    ``dataset`` is the parsed JSON (COCO layout: ``images``, ``annotations``, ``categories``);
    ``images`` maps image id to ``(height, width)`` in pixels.
    """

    protocol: Protocol
    path: Path
    dataset: dict[str, Any] = field(repr=False)
    sha256: str
    images: dict[int, tuple[int, int]] = field(repr=False)

    @classmethod
    def load(cls, protocol: Protocol, data_root: Path | str) -> "DetectionGroundTruth":
        path = Path(data_root) / protocol.layout.labels
        dataset, digest = read_annotation_json(path, ("images", "annotations", "categories"),
                                               "annotation", "COCO-format annotation", protocol.id,
                                               preparation_hint(protocol))
        check_categories(protocol, dataset["categories"], path)
        if protocol.evaluation.get("style") == "lvis":
            _check_federated_fields(dataset["images"], path)
        images = {int(im["id"]): (int(im["height"]), int(im["width"])) for im in dataset["images"]}
        return cls(protocol=protocol, path=path, dataset=dataset, sha256=digest,
                   images=images)

    @property
    def category_ids(self) -> set[int]:
        return {int(c["id"]) for c in self.dataset["categories"]}


def check_categories(protocol: Protocol, categories: list[dict[str, Any]], path: Path) -> None:
    """Raise unless ``categories`` are the protocol's classes (ids, names, LVIS rare = novel)."""
    classes = {c.id: c for c in protocol.require_classes()}
    problems = []
    found = {int(c["id"]): c for c in categories}
    missing = sorted(set(classes) - set(found))
    extra = sorted(set(found) - set(classes))
    if missing:
        problems.append(f"{len(missing)} protocol classes are missing: ids {missing[:10]}")
    if extra:
        problems.append(f"{len(extra)} categories are not in the protocol: ids {extra[:10]}")
    for cid in sorted(set(classes) & set(found)):
        info, cat = classes[cid], found[cid]
        if cat.get("name") not in (info.name, info.dataset_name):
            problems.append(f"category {cid} is {cat.get('name')!r}, the protocol's class {cid} is {info.name!r}")
        if info.frequency is not None and cat.get("frequency") != info.frequency:
            problems.append(f"category {cid} has frequency {cat.get('frequency')!r}, the protocol's class "
                            f"table says {info.frequency!r}")
    if problems:
        raise ValidationError(str(path), problems, f"this is not {protocol.id}'s annotation file; "
                                                   f"{preparation_hint(protocol)}")


def _check_federated_fields(images: list[dict[str, Any]], path: Path) -> None:
    lacking = [im.get("id") for im in images if not all(k in im for k in FEDERATED_KEYS)]
    if lacking:
        raise OvbenchError(f"{path}: {len(lacking)} images lack {' / '.join(FEDERATED_KEYS)} (e.g. image "
                           f"{lacking[0]}), which federated LVIS evaluation needs; use the official LVIS v1 file")
