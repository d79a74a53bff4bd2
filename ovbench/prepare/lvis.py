"""``ovbench data prepare lvis``: the LVIS v1 class table and the base-only (f+c) train file.

Inputs, below ``--root`` (the official LVIS v1 files, unzipped): ``lvis/lvis_v1_val.json`` and
``lvis/lvis_v1_train.json``. Their categories must be the same 1203 (id, name, synonyms,
frequency), 337 rare / 461 common / 405 frequent, and every image must carry the federated
fields ``neg_category_ids`` and ``not_exhaustive_category_ids``.

Outputs, below ``--root/lvis/``:

- ``ovbench_lvis_classes.json`` (the class table protocol ``lvis-ovd`` reads; indented JSON):
  a list in category-id order of ``{"id", "name", "dataset_name", "synonyms", "frequency"}``
  where ``dataset_name`` is LVIS's name (``"aerosol_can"``), ``name`` the same with ``_`` ->
  space (prompt-ready: ``"aerosol can"``) and ``synonyms`` LVIS's synonyms with ``_`` -> space,
  deduplicated and never repeating ``name``. Partitions are not stored: the protocol's
  frequency rule sets them at load time (rare = novel).
- ``lvis_v1_train_ovd866base.json`` (compact LVIS JSON): train cut to the base (frequent +
  common) categories and their annotations, keeping only the images that still hold at least
  one annotation; rare ids are also removed from each image's ``neg_category_ids`` and
  ``not_exhaustive_category_ids``. Other keys are kept as they are.

The val file is used as it is (the protocol reads ``lvis/lvis_v1_val.json``); it is only checked.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

from ovbench.errors import OvbenchError
from ovbench.prepare.base import FileSummary, InputFile, Preparer, PrepareReport
from ovbench.prepare.instances import Doc, count_by, restrict_to_categories
from ovbench.prepare.jsonio import read_json_object, write_json
from ovbench.protocols import Protocol, get_protocol

PROTOCOL_ID = "lvis-ovd"
VAL_IN = "lvis/lvis_v1_val.json"
TRAIN_IN = "lvis/lvis_v1_train.json"
CLASS_TABLE_OUT = "lvis/ovbench_lvis_classes.json"
TRAIN_OUT = "lvis/lvis_v1_train_ovd866base.json"
#: LVIS v1's number of categories per frequency group (rare, common, frequent).
FREQUENCIES = {"r": 337, "c": 461, "f": 405}
FREQUENCY_NAMES = {"r": "rare", "c": "common", "f": "frequent"}
FEDERATED = ("neg_category_ids", "not_exhaustive_category_ids")
WHAT = "the LVIS v1 annotation file"
SOURCES = {VAL_IN: "https://dl.fbaipublicfiles.com/LVIS/lvis_v1_val.json.zip (unzip it into <root>/lvis/)",
           TRAIN_IN: "https://dl.fbaipublicfiles.com/LVIS/lvis_v1_train.json.zip (unzip it into <root>/lvis/)"}


def run(root: Path, progress: bool = True) -> PrepareReport:
    """Check val, then read, check and cut train; write the class table and the base-only train file."""
    protocol = get_protocol(PROTOCOL_ID)
    val_path, train_path = root / VAL_IN, root / TRAIN_IN
    val_fix, train_fix = _fix(VAL_IN), _fix(TRAIN_IN)
    val = _read(val_path, val_fix)
    categories = _checked_categories(val["categories"], protocol, val_path, val_fix)
    frequency = {c["id"]: c["frequency"] for c in categories}
    _check_federated(val["images"], val_path, val_fix)
    val_counts = {"images": len(val["images"]), "categories": len(categories),
                  "annotations": len(val["annotations"]),
                  **_frequency_counts(val["annotations"], frequency, val_path, val_fix)}
    del val  # the train file is several GB once parsed: hold one file at a time

    train = _read(train_path, train_fix)
    _check_same_categories(_checked_categories(train["categories"], protocol, train_path, train_fix),
                           categories, train_path, val_path)
    _check_federated(train["images"], train_path, train_fix)
    train_frequencies = _frequency_counts(train["annotations"], frequency, train_path, train_fix)
    novel_groups = set(protocol.partition_rule["novel"])
    novel = {cid for cid, f in frequency.items() if f in novel_groups}
    base = frequency.keys() - novel
    cut = _base_only(train, base, novel, train_path, train_fix, progress)
    train_counts = {"images": len(cut["images"]), "images_dropped": len(train["images"]) - len(cut["images"]),
                    "categories": len(cut["categories"]), "annotations": len(cut["annotations"]),
                    "annotations_dropped_rare": train_frequencies["annotations_rare"]}
    table = [class_table_entry(c) for c in categories]

    write_json(root / CLASS_TABLE_OUT, table, indent=2)
    write_json(root / TRAIN_OUT, cut)
    return PrepareReport(
        name=PREPARER.name, root=root,
        files=(FileSummary(CLASS_TABLE_OUT, "wrote", {"classes": len(table), "base": len(base),
                                                      "novel": len(novel)}),
               FileSummary(TRAIN_OUT, "wrote", train_counts),
               FileSummary(VAL_IN, "checked", val_counts)),
        notes=(f"train keeps the {len(base)} frequent + common categories and the images still holding at "
               "least one of their annotations; rare ids are removed from neg_category_ids and "
               "not_exhaustive_category_ids",
               f"protocol {PROTOCOL_ID} reads {VAL_IN} as it is and its class table from {CLASS_TABLE_OUT}"))


def class_table_entry(category: Mapping[str, Any]) -> dict[str, Any]:
    """The class-table row of one LVIS category (see the module docstring)."""
    name = category["name"].replace("_", " ")
    synonyms: list[str] = []
    for s in category["synonyms"]:
        s = s.replace("_", " ")
        if s != name and s not in synonyms:
            synonyms.append(s)
    return {"id": category["id"], "name": name, "dataset_name": category["name"], "synonyms": synonyms,
            "frequency": category["frequency"]}


def _fix(input_path: str) -> str:
    """How to get a good copy of the input ``input_path``."""
    return f"use the official file from {SOURCES[input_path]}"


def _read(path: Path, fix: str) -> Doc:
    return read_json_object(path, ("images", "annotations", "categories"), WHAT, fix)


def _checked_categories(raw: Sequence[Any], protocol: Protocol, path: Path, fix: str) -> list[dict[str, Any]]:
    """``raw`` in id order, checked to be LVIS v1's: well-formed, distinct ids, the v1 frequency split."""
    bad = [i for i, c in enumerate(raw) if not (
        isinstance(c, dict) and isinstance(c.get("id"), int) and isinstance(c.get("name"), str)
        and isinstance(c.get("synonyms"), list) and all(isinstance(s, str) for s in c["synonyms"])
        and c.get("frequency") in FREQUENCIES)]
    if bad:
        raise OvbenchError(f"{path}: not {WHAT}: {len(bad)} category entries lack an integer id, a name, a "
                           f"synonyms list or a frequency r/c/f (first: entry {bad[0]}); {fix}")
    categories = sorted(raw, key=lambda c: c["id"])
    ids = [c["id"] for c in categories]
    if len(set(ids)) != len(ids):
        dup = next(a for a, b in zip(ids, ids[1:]) if a == b)
        raise OvbenchError(f"{path}: not {WHAT}: category id {dup} appears twice; {fix}")
    split = Counter(c["frequency"] for c in categories)
    if len(categories) != protocol.num_classes or split != Counter(FREQUENCIES):
        raise OvbenchError(f"{path}: not {WHAT}: {len(categories)} categories ({_split(split)}), protocol "
                           f"{protocol.id} expects {protocol.num_classes} ({_split(FREQUENCIES)}); {fix}")
    return categories


def _split(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{counts.get(k, 0)} {FREQUENCY_NAMES[k]}" for k in FREQUENCIES)


def _check_same_categories(categories: Sequence[Mapping[str, Any]], reference: Sequence[Mapping[str, Any]],
                           path: Path, reference_path: Path) -> None:
    """Raise unless both (id-sorted) category lists agree on id, name, synonyms and frequency."""
    def key(c: Mapping[str, Any]) -> tuple[Any, ...]:
        return c["id"], c["name"], tuple(c["synonyms"]), c["frequency"]
    diff = next((i for i, (a, b) in enumerate(zip(categories, reference)) if key(a) != key(b)), None)
    if diff is not None:
        raise OvbenchError(f"{path}: its categories differ from those of {reference_path} (first at category "
                           f"id {reference[diff]['id']}); both must come from the same LVIS v1 release")


def _check_federated(images: Sequence[Any], path: Path, fix: str) -> None:
    """Raise unless every image has an integer ``id`` and lists under the federated fields."""
    bad = [im for im in images if not (isinstance(im, dict) and isinstance(im.get("id"), int)
                                       and all(isinstance(im.get(k), list) for k in FEDERATED))]
    if bad:
        first = bad[0].get("id") if isinstance(bad[0], dict) else bad[0]
        raise OvbenchError(f"{path}: not {WHAT}: {len(bad)} image(s) lack an id or the federated fields "
                           f"{' / '.join(FEDERATED)} (first: image {first!r}); {fix}")


def _frequency_counts(annotations: Sequence[Mapping[str, Any]], frequency: Mapping[int, str], path: Path,
                      fix: str) -> dict[str, int]:
    """``annotations_rare`` / ``_common`` / ``_frequent`` (checks that every category id is known)."""
    counts = count_by(annotations, frequency, path, fix)
    return {f"annotations_{FREQUENCY_NAMES[k]}": counts[k] for k in FREQUENCIES}


def _base_only(doc: Doc, base: Collection[int], novel: Collection[int], path: Path, fix: str,
               progress: bool) -> Doc:
    """``doc`` cut to the ``base`` categories (see the module docstring)."""
    images, annotations = restrict_to_categories(doc, base, path, fix, progress)
    images = [{**im, **{k: [i for i in im[k] if i not in novel] for k in FEDERATED}} for im in images]
    categories = [c for c in doc["categories"] if c["id"] in base]
    return {**doc, "images": images, "annotations": annotations, "categories": categories}


PREPARER = Preparer(
    name="lvis",
    help="LVIS v1 -> the lvis-ovd class table and the frequent+common (866 base classes) train file",
    inputs=(InputFile(VAL_IN, "LVIS v1 val annotations", SOURCES[VAL_IN]),
            InputFile(TRAIN_IN, "LVIS v1 train annotations", SOURCES[TRAIN_IN])),
    outputs=(CLASS_TABLE_OUT, TRAIN_OUT),
    run=run,
    protocols=("lvis-ovd",))
