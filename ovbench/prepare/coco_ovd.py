"""``ovbench data prepare coco-ovd``: COCO 2017 instances cut to the OVR-CNN 48/17 split.

Inputs, below ``--root`` (the official COCO 2017 instance files, annotations_trainval2017.zip):
``coco/annotations/instances_val2017.json`` and ``coco/annotations/instances_train2017.json``.

Outputs, below ``--root/coco/annotations/ovbench/``, COCO instances JSON (compact), with the
input's other top-level keys (``info``, ``licenses``) kept and every kept category being COCO's
own dict plus a ``partition`` field (``"base"`` or ``"novel"``):

- ``instances_val2017_ovd65.json`` (what protocol ``coco-ovd`` reads): the 65 categories, all
  their annotations (crowd ones kept: COCOeval ignores them), and the images holding at least
  one of them (OVR-CNN's convention; it reports 4,836 images for val2017, unverified here);
- ``instances_train2017_ovd48base.json``: the 48 base categories and their annotations only;
  novel and excluded objects stay in the images, unannotated; images without a base
  annotation (crowd ones count) are dropped.

The 65 classes and their partition are the ``coco-ovd`` protocol's (ids = COCO category ids).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from ovbench.errors import OvbenchError
from ovbench.prepare.base import FileSummary, InputFile, Preparer, PrepareReport
from ovbench.prepare.instances import Doc, count_by, crowd_count, restrict_to_categories
from ovbench.prepare.jsonio import read_json_object, write_json
from ovbench.protocols import ClassInfo, get_protocol

PROTOCOL_ID = "coco-ovd"
VAL_IN = "coco/annotations/instances_val2017.json"
TRAIN_IN = "coco/annotations/instances_train2017.json"
VAL_OUT = "coco/annotations/ovbench/instances_val2017_ovd65.json"
TRAIN_OUT = "coco/annotations/ovbench/instances_train2017_ovd48base.json"
SOURCE = "http://images.cocodataset.org/annotations/annotations_trainval2017.zip (unzip it into <root>/coco/)"
WHAT = "the COCO 2017 instances file"
FIX = f"use the official file from {SOURCE}"


def run(root: Path, progress: bool = True) -> PrepareReport:
    """Read and validate both inputs, then write both outputs (see the module docstring)."""
    classes = get_protocol(PROTOCOL_ID).require_classes()
    partition = {c.id: c.partition for c in classes}
    base = {cid: p for cid, p in partition.items() if p == "base"}
    val, val_counts = _restrict(_read(root / VAL_IN, classes), partition, root / VAL_IN, progress)
    train, train_counts = _restrict(_read(root / TRAIN_IN, classes), base, root / TRAIN_IN, progress)
    write_json(root / VAL_OUT, val)
    write_json(root / TRAIN_OUT, train)
    return PrepareReport(
        name=PREPARER.name, root=root,
        files=(FileSummary(VAL_OUT, "wrote", val_counts), FileSummary(TRAIN_OUT, "wrote", train_counts)),
        notes=(f"val keeps the images holding at least one annotation of the {len(partition)} classes "
               "(crowd ones count); OVR-CNN reports 4,836 such images for val2017 (unverified)",
               f"train keeps the {len(base)} base classes' annotations and the images holding at least one; "
               "novel and excluded objects stay in those images, unannotated"))


def _read(path: Path, classes: Sequence[ClassInfo]) -> Doc:
    """The instances document at ``path``, checked to hold the protocol's classes under their COCO ids."""
    doc = read_json_object(path, ("images", "annotations", "categories"), WHAT, FIX)
    try:
        names = {c["id"]: c["name"] for c in doc["categories"]}
    except (KeyError, TypeError) as e:
        raise OvbenchError(f"{path}: not {WHAT} (malformed category entry, no field {e}); {FIX}") from e
    wrong = [c for c in classes if names.get(c.id) != (c.dataset_name or c.name)]
    if wrong:
        c = wrong[0]
        raise OvbenchError(f"{path}: not {WHAT}: {len(wrong)} of the {len(classes)} {PROTOCOL_ID} categories "
                           f"are missing or misnamed (first: id {c.id} is {names.get(c.id)!r}, expected "
                           f"{c.dataset_name or c.name!r}); {FIX}")
    return doc


def _restrict(doc: Doc, partition: Mapping[int, str], where: Path, progress: bool) -> tuple[Doc, dict[str, int]]:
    """``doc`` cut to the categories of ``partition`` (id -> partition), and its counts."""
    images, annotations = restrict_to_categories(doc, partition.keys(), where, FIX, progress)
    categories: list[dict[str, Any]] = [{**c, "partition": partition[c["id"]]}
                                        for c in doc["categories"] if c["id"] in partition]
    per_partition = count_by(annotations, partition, where, FIX)
    counts = {"images": len(images), "images_dropped": len(doc["images"]) - len(images),
              "categories": len(categories), "annotations": len(annotations)}
    counts.update({f"annotations_{p}": per_partition[p] for p in ("base", "novel") if p in partition.values()})
    counts["crowd"] = crowd_count(annotations)
    return {**doc, "images": images, "annotations": annotations, "categories": categories}, counts


PREPARER = Preparer(
    name="coco-ovd",
    help="COCO 2017 instances -> the 65-class val and 48-base-class train files of protocol coco-ovd",
    inputs=(InputFile(VAL_IN, "COCO 2017 val instances", SOURCE),
            InputFile(TRAIN_IN, "COCO 2017 train instances", SOURCE)),
    outputs=(VAL_OUT, TRAIN_OUT),
    run=run,
    protocols=("coco-ovd",))
