"""``ovbench data prepare ade20k``: ADEChallengeData2016 annotations -> protocol ade-150.

Inputs, below ``--root`` (``ADEChallengeData2016.zip`` of the SceneParsing benchmark unpacked there):

- ``ADEChallengeData2016/images/{training,validation}/<id>.jpg`` (20210 / 2000 in the release);
- ``ADEChallengeData2016/annotations/{training,validation}/<id>.png``: single-channel 8-bit PNGs,
  0 = "other objects" (unlabelled), 1..150 = the ``Idx`` of objectInfo150.txt;
- ``ADEChallengeData2016/objectInfo150.txt`` (in the zip; optional): tab-separated
  ``Idx Ratio Train Val Name``, one line per class. When present, each ``Name`` is checked against
  the ``dataset_name`` of the protocol's class with that raw value, as sets of comma-separated items
  with the spaces around them stripped: the release writes ``"bed "`` and the protocol ``"bed"``, and
  the copy in CSAILVision/sceneparsing lists ``television`` before ``television receiver`` where
  the protocol has the reverse.

Outputs, below ``--root/ADEChallengeData2016/``: ``annotations_detectron2/{training,validation}/<id>.png``
(uint8, mode ``L``; what ade-150 reads for validation): the raw value v -> class id v - 1 (0..149, the
protocol's ``dataset_ids``), raw 0 -> 255 (ignored); the files detectron2's
``datasets/prepare_ade20k_sem_seg.py`` writes.

Every image is paired with its annotation (no file without its partner) and every annotation is
decoded and checked (values 0..150, the image's size) before anything is written; each output is
written atomically, a file whose bytes would not change is left alone, and stale files below the
output folders are removed. Image counts other than the release's are reported as notes, not errors.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from ovbench.data.label_io import LabelDecodeError, decode_label_map
from ovbench.errors import OvbenchError, ValidationError
from ovbench.prepare.base import FileSummary, InputFile, Preparer, PrepareReport
from ovbench.prepare.files import (check_size, class_counts, image_size, label_table, png_bytes, remove_stale,
                                   write_counts, write_if_changed)
from ovbench.protocols import ClassInfo, get_protocol

PROTOCOL = "ade-150"
ROOT = "ADEChallengeData2016"
IMAGES = f"{ROOT}/images"
ANNOTATIONS = f"{ROOT}/annotations"
OBJECT_INFO = f"{ROOT}/objectInfo150.txt"
OUT = f"{ROOT}/annotations_detectron2"
SPLITS = ("validation", "training")
#: Images per split in ADEChallengeData2016.zip.
OFFICIAL = {"training": 20210, "validation": 2000}
NUM_VALUES = 151  # raw annotation values 0..150
IGNORE = 255
OBJECT_INFO_HEADER = ("Idx", "Ratio", "Train", "Val", "Name")
SOURCE = ("http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip (the SceneParsing benchmark, "
          "http://sceneparsing.csail.mit.edu/); unpack it into --root")
FIX = f"use the official files: {SOURCE}"


def run(root: Path, progress: bool = True) -> PrepareReport:
    """Check objectInfo150.txt (when present) and every image / annotation pair, then write the label maps."""
    protocol = get_protocol(PROTOCOL)
    classes, dataset_ids = protocol.require_classes(), protocol.definition["dataset_ids"]
    lut = label_table(dataset_ids, size=NUM_VALUES, ignore=IGNORE, dtype=np.uint8)
    files: list[FileSummary] = []
    notes: list[str] = []
    if (root / OBJECT_INFO).is_file():
        files.append(_check_object_info(root / OBJECT_INFO, classes, dataset_ids))
    else:
        notes.append(f"{OBJECT_INFO} not found: the class names were not checked against the release")
    ids = _checked_pairs(root)
    present = {split: np.zeros(NUM_VALUES, bool) for split in SPLITS}
    for split in SPLITS:
        for image_id in tqdm(ids[split], desc=f"ade20k {split} check", unit="image", disable=not progress):
            present[split][np.flatnonzero(np.bincount(_checked_annotation(root, split, image_id).ravel()))] = True
    for split in SPLITS:
        actions: Counter[str] = Counter()
        for image_id in tqdm(ids[split], desc=f"ade20k {split} write", unit="image", disable=not progress):
            label = np.take(lut, _checked_annotation(root, split, image_id))
            actions[write_if_changed(root / OUT / split / f"{image_id}.png", png_bytes(label))] += 1
        stale = remove_stale(root / OUT / split, {f"{i}.png" for i in ids[split]})
        files.append(FileSummary(f"{OUT}/{split}", "wrote", {"images": len(ids[split]),
                                                        **class_counts(lut[present[split]], IGNORE),
                                                        **write_counts(actions, stale)}))
        if len(ids[split]) != OFFICIAL[split]:
            notes.append(f"{split}: {len(ids[split])} images, the release has {OFFICIAL[split]}; results are not "
                         f"comparable with the official {split} set")
    notes.append("class id = raw annotation value - 1 (0..149); raw 0 ('other objects', unlabelled) is 255 "
                 "and ignored")
    return PrepareReport(name=PREPARER.name, root=root, files=tuple(files), notes=tuple(notes))


def read_object_info(path: Path) -> dict[int, str]:
    """objectInfo150.txt as ``{Idx: Name}`` (names as written, trailing spaces included)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise OvbenchError(f"{path}: cannot read it ({e}); {FIX}") from e
    rows = [line.split("\t") for line in lines if line.strip()]
    if not rows or tuple(f.strip() for f in rows[0]) != OBJECT_INFO_HEADER:
        raise OvbenchError(f"{path}: the first line is not the header {' / '.join(OBJECT_INFO_HEADER)} "
                           f"(tab-separated); {FIX}")
    names: dict[int, str] = {}
    for number, fields in enumerate(rows[1:], start=2):
        if len(fields) != len(OBJECT_INFO_HEADER) or not fields[0].strip().isdigit():
            raise OvbenchError(f"{path}: line {number} is not '<Idx>\\t<Ratio>\\t<Train>\\t<Val>\\t<Name>'; {FIX}")
        names[int(fields[0])] = fields[-1]
    return names


def name_items(name: str) -> frozenset[str]:
    """The comma-separated items of an ADE class name, stripped (``"bed "`` -> ``{"bed"}``)."""
    return frozenset(item.strip() for item in name.split(",") if item.strip())


def _check_object_info(path: Path, classes: Sequence[ClassInfo], dataset_ids: Sequence[int]) -> FileSummary:
    """Raise unless objectInfo150.txt names the protocol's classes (module docstring)."""
    names = read_object_info(path)
    if sorted(names) != list(range(1, NUM_VALUES)):
        raise OvbenchError(f"{path}: {len(names)} classes, expected Idx 1..{NUM_VALUES - 1} each once; {FIX}")
    for c, value in zip(classes, dataset_ids):
        if c.dataset_name is None or name_items(names[value]) != name_items(c.dataset_name):
            raise OvbenchError(f"{path}: class {value} is {names[value].strip()!r}, protocol {PROTOCOL} has "
                               f"{c.dataset_name!r} there; not the objectInfo150.txt of ADEChallengeData2016; {FIX}")
    return FileSummary(OBJECT_INFO, "checked", {"classes": len(names)})


def _checked_pairs(root: Path) -> dict[str, list[str]]:
    """``{split: sorted image ids}``; one :class:`ValidationError` naming every image without its
    annotation and every annotation without its image."""
    problems: list[str] = []
    ids: dict[str, list[str]] = {}
    for split in SPLITS:
        image_dir, annotation_dir = root / IMAGES / split, root / ANNOTATIONS / split
        images = {p.stem for p in image_dir.glob("*.jpg")}
        annotations = {p.stem for p in annotation_dir.glob("*.png")}
        problems += [f"{annotation_dir / i}.png not found (the annotation of {image_dir / i}.jpg)"
                     for i in sorted(images - annotations)]
        problems += [f"{image_dir / i}.jpg not found (the image of {annotation_dir / i}.png)"
                     for i in sorted(annotations - images)]
        if not images and not annotations:
            problems.append(f"{image_dir}: no .jpg image")
        ids[split] = sorted(images & annotations)
    if problems:
        raise ValidationError(f"dataset ade20k: images and annotations below {root / ROOT} do not pair up", problems,
                              fix=f"{FIX}; every images/<split>/<id>.jpg needs annotations/<split>/<id>.png")
    return ids


def _checked_annotation(root: Path, split: str, image_id: str) -> np.ndarray:
    """The raw values (shape (H, W), 0..150) of ``image_id``'s annotation, checked against its image."""
    path = root / ANNOTATIONS / split / f"{image_id}.png"
    try:
        arr, _ = decode_label_map(path.read_bytes())
    except (OSError, LabelDecodeError) as e:
        raise OvbenchError(f"{path}: not an ADEChallengeData2016 annotation ({e}); {FIX}") from e
    high = int(arr.max())
    if high >= NUM_VALUES or int(arr.min()) < 0:
        raise OvbenchError(f"{path}: value {high if high >= NUM_VALUES else int(arr.min())} is no ADE-150 label "
                           f"(0 unlabelled, 1..{NUM_VALUES - 1} classes); {FIX}")
    check_size(path, arr.shape, image_size(root / IMAGES / split / f"{image_id}.jpg", "JPEG", FIX), FIX)
    return arr


PREPARER = Preparer(
    name="ade20k",
    help="ADEChallengeData2016 (SceneParsing) annotations -> ade-150 label maps (raw - 1, unlabelled 255)",
    inputs=tuple(InputFile(f"{folder}/{split}/", what, SOURCE) for split in SPLITS for folder, what in (
        (IMAGES, f"ADE20K SceneParsing {split} images (<id>.jpg)"),
        (ANNOTATIONS, f"ADE20K SceneParsing {split} annotations (<id>.png, values 0..150)"))),
    outputs=tuple(f"{OUT}/{split}/" for split in SPLITS),
    run=run,
    protocols=(PROTOCOL,))

__all__ = ["PREPARER", "name_items", "read_object_info"]
