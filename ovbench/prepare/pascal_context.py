"""``ovbench data prepare pascal-context``: PASCAL-Context val -> protocols pascal-context-59 and -459.

Inputs, below ``--root``:

- ``VOCdevkit/VOC2010/JPEGImages/<id>.jpg`` and ``VOCdevkit/VOC2010/ImageSets/Main/val.txt``
  (``VOCtrainval_03-May-2010.tar`` unpacked into ``--root``). PASCAL-Context's val set is VOC2010's
  Main val list: 5105 images (the 4998 / 5105 train / val split of the 10103 annotated trainval
  images). The detectron2-style preparations behind published numbers (fc-clip, ODISE, GKC: the
  Detail API's ``trainval_merged.json`` val split; CAT-Seg's ``pascalcontext_val.txt``;
  mmsegmentation's ``SegmentationContext/val.txt``) hold 5104 of them, one image fewer;
- ``pascal-context/trainval/<id>.mat`` and ``pascal-context/labels.txt``: the full annotations
  (``trainval.tar.gz`` of the PASCAL-Context site, now https://roozbehm.info/pascal-context/,
  unpacked into ``--root/pascal-context/``). Each .mat holds ``LabelMap`` (uint16, the image's size) of
  labels.txt ids, 0 = unlabelled; labels.txt has one line ``<id>: <name>`` per label, ids 1..459
  (``1: accordion``, ``3: air conditioner``, ``308: pottedplant``).

Outputs, below ``--root/pascal_ctx_d2/`` (the layout fc-clip/ODISE's preparation writes):

- ``images/validation/<id>.jpg``: a hard link to the JPEG (a copy where the filesystem refuses);
- ``annotations_ctx459/validation/<id>.tif`` (pascal-context-459): uint16 TIFF (mode ``I;16``,
  deflate-compressed), pixel = labels.txt id - 1 (0..458), unlabelled 65535;
- ``annotations_ctx59/validation/<id>.png`` (pascal-context-59): uint8, the 59 labels of that
  protocol's ``dataset_ids`` -> their position 0..58 (labels.txt-id order), everything else (the
  unlabelled pixels and the 400 other labels) 255. fc-clip/ODISE build this map from
  ``trainval_merged.json`` with the Detail API; the mapping is the same.
- ``ovbench_classes_459.json`` (the class table pascal-context-459 reads): labels.txt in id order
  as ``{"name", "synonyms", "dataset_name"}``; ``dataset_name`` is the labels.txt name. The 59
  labels shared with pascal-context-59 take that protocol's prompt name and synonyms
  (``pottedplant`` -> ``potted plant``; aeroplane's ``airplane``), so both protocols prompt and
  partition them alike, less any synonym that names another label (rock's ``stone``); the other
  400 keep their labels.txt name, without synonyms.

labels.txt is checked (ids 1..459, the 59 names of pascal-context-59) and every val image's
.mat (LabelMap, values 0..459, the JPEG's size) before anything is written; outputs are written
atomically, a file whose bytes would not change is left alone, and stale files below the
output folders are removed.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.io
from tqdm import tqdm

from ovbench.errors import OvbenchError
from ovbench.prepare.base import FileSummary, InputFile, Preparer, PrepareReport
from ovbench.prepare.files import (check_size, class_counts, image_counts, image_size, label_table,
                                   link_or_copy, png_bytes, read_id_list, remove_stale, require_files,
                                   tiff_bytes, write_counts, write_if_changed)
from ovbench.protocols import ClassInfo, get_protocol
from ovbench.protocols.overlap import normalise_name

PROTOCOL_59 = "pascal-context-59"
PROTOCOL_459 = "pascal-context-459"
VOC = "VOCdevkit/VOC2010"
VAL_LIST = f"{VOC}/ImageSets/Main/val.txt"
IMAGES = f"{VOC}/JPEGImages"
CONTEXT = "pascal-context"
MATS = f"{CONTEXT}/trainval"
LABELS_TXT = f"{CONTEXT}/labels.txt"
OUT = "pascal_ctx_d2"
IMAGES_OUT = f"{OUT}/images/validation"
CTX459_OUT = f"{OUT}/annotations_ctx459/validation"
CTX59_OUT = f"{OUT}/annotations_ctx59/validation"
CLASS_TABLE_OUT = f"{OUT}/ovbench_classes_459.json"
#: Images in VOC2010's ImageSets/Main/val.txt, PASCAL-Context's val set.
OFFICIAL_VAL = 5105
NUM_LABELS = 459  # labels.txt ids 1..459; 0 = unlabelled
IGNORE_459 = 65535
IGNORE_59 = 255
VOC_SOURCE = ("http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar "
              "(unpack it into --root: it holds VOCdevkit/VOC2010/)")
CONTEXT_SOURCE = ("https://roozbehm.info/pascal-context/trainval.tar.gz (formerly under "
                  "https://cs.stanford.edu/~roozbeh/pascal-context/); unpack it into --root/pascal-context/: it holds "
                  "trainval/ and labels.txt")
VOC_FIX = f"use the official VOC2010 files: {VOC_SOURCE}"
CONTEXT_FIX = f"use the official PASCAL-Context full annotations: {CONTEXT_SOURCE}"
LINE = re.compile(r"\s*(\d+)\s*:\s*(\S(?:.*\S)?)\s*")


def run(root: Path, progress: bool = True) -> PrepareReport:
    """Check labels.txt and every val annotation, then write images, both label maps and the class table."""
    pc59 = get_protocol(PROTOCOL_59)
    classes59, ids59 = pc59.require_classes(), pc59.definition["dataset_ids"]
    names = read_labels_txt(root / LABELS_TXT)
    _check_pc59_names(root / LABELS_TXT, names, classes59, ids59)
    table = class_table(names, classes59, ids59)
    lut459 = np.concatenate([[IGNORE_459], np.arange(NUM_LABELS)]).astype(np.uint16)  # id -> id - 1, 0 -> 65535
    lut59 = label_table(ids59, size=NUM_LABELS + 1, ignore=IGNORE_59, dtype=np.uint8)
    ids = read_id_list(root / VAL_LIST, VOC_FIX)
    require_files(root, ids, (f"{IMAGES}/{{id}}.jpg", f"{MATS}/{{id}}.mat"), "pascal-context",
                  f"{VOC_FIX}; {CONTEXT_FIX}")
    present = np.zeros(NUM_LABELS + 1, bool)
    for image_id in tqdm(ids, desc="pascal-context check", unit="image", disable=not progress):
        present[np.flatnonzero(np.bincount(_checked_label_map(root, image_id).ravel()))] = True

    write_if_changed(root / CLASS_TABLE_OUT, _json_bytes(table))
    images: Counter[str] = Counter()
    ctx459: Counter[str] = Counter()
    ctx59: Counter[str] = Counter()
    for image_id in tqdm(ids, desc="pascal-context write", unit="image", disable=not progress):
        images[link_or_copy(root / IMAGES / f"{image_id}.jpg", root / IMAGES_OUT / f"{image_id}.jpg")] += 1
        label_map = _checked_label_map(root, image_id)
        ctx459[write_if_changed(root / CTX459_OUT / f"{image_id}.tif", tiff_bytes(np.take(lut459, label_map)))] += 1
        ctx59[write_if_changed(root / CTX59_OUT / f"{image_id}.png", png_bytes(np.take(lut59, label_map)))] += 1
    stale = {out: remove_stale(root / out, {f"{i}{ext}" for i in ids})
             for out, ext in ((IMAGES_OUT, ".jpg"), (CTX459_OUT, ".tif"), (CTX59_OUT, ".png"))}
    return PrepareReport(name=PREPARER.name, root=root, notes=_notes(len(ids)), files=(
        FileSummary(LABELS_TXT, "checked", {"labels": len(names), "pc59_names": len(ids59)}),
        FileSummary(VAL_LIST, "checked", {"images": len(ids)}),
        FileSummary(CLASS_TABLE_OUT, "wrote", {"classes": len(table)}),
        FileSummary(IMAGES_OUT, "wrote", image_counts(len(ids), images, stale[IMAGES_OUT])),
        FileSummary(CTX459_OUT, "wrote", {"images": len(ids), **class_counts(lut459[present], IGNORE_459),
                                     **write_counts(ctx459, stale[CTX459_OUT])}),
        FileSummary(CTX59_OUT, "wrote", {"images": len(ids), **class_counts(lut59[present], IGNORE_59),
                                    **write_counts(ctx59, stale[CTX59_OUT])})))


def read_labels_txt(path: Path) -> list[str]:
    """The names of labels.txt in id order (index k holds label k + 1); ids must be 1..459, each once."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise OvbenchError(f"{path}: cannot read it ({e}); {CONTEXT_FIX}") from e
    names: dict[int, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        m = LINE.fullmatch(line)
        if m is None:
            raise OvbenchError(f"{path}: line {number} ({line.strip()!r}) is not '<id>: <name>'; {CONTEXT_FIX}")
        label_id = int(m[1])
        if label_id in names:
            raise OvbenchError(f"{path}: label id {label_id} appears twice (line {number}); {CONTEXT_FIX}")
        names[label_id] = m[2]
    if sorted(names) != list(range(1, NUM_LABELS + 1)):
        odd = sorted(set(names) ^ set(range(1, NUM_LABELS + 1)))
        raise OvbenchError(f"{path}: {len(names)} labels, expected ids 1..{NUM_LABELS} each once (first id off: "
                           f"{odd[0]}); not the labels.txt of the 459-label release; {CONTEXT_FIX}")
    return [names[i] for i in range(1, NUM_LABELS + 1)]


def _check_pc59_names(path: Path, names: Sequence[str], pc59: Sequence[ClassInfo], ids59: Sequence[int]) -> None:
    """Raise unless labels.txt names each of pascal-context-59's ``dataset_ids`` as that protocol does."""
    for c, label_id in zip(pc59, ids59):
        if names[label_id - 1] != c.dataset_name:
            raise OvbenchError(f"{path}: label {label_id} is {names[label_id - 1]!r}, protocol {PROTOCOL_59} has "
                               f"{c.dataset_name!r} there; not the labels.txt of the 459-label release; "
                               f"{CONTEXT_FIX}")


def class_table(names: Sequence[str], pc59: Sequence[ClassInfo], ids59: Sequence[int]) -> list[dict[str, Any]]:
    """The rows of ``ovbench_classes_459.json`` (module docstring) for labels.txt ``names`` in id order."""
    curated = dict(zip(ids59, pc59))
    label_names = {normalise_name(n) for n in names}
    rows = []
    for label_id, dataset_name in enumerate(names, start=1):
        c = curated.get(label_id)
        if c is None:
            rows.append({"name": dataset_name, "synonyms": [], "dataset_name": dataset_name})
            continue
        own = normalise_name(dataset_name)
        synonyms = [s for s in c.synonyms if normalise_name(s) == own or normalise_name(s) not in label_names]
        rows.append({"name": c.name, "synonyms": synonyms, "dataset_name": dataset_name})
    return rows


def _checked_label_map(root: Path, image_id: str) -> np.ndarray:
    """The ``LabelMap`` of ``image_id``'s .mat (integers 0..459, shape (H, W) of its JPEG)."""
    path = root / MATS / f"{image_id}.mat"
    try:
        label_map = scipy.io.loadmat(path, variable_names=["LabelMap"]).get("LabelMap")
    except Exception as e:  # scipy raises many types for truncated or foreign files
        raise OvbenchError(f"{path}: cannot read it as a MATLAB file ({type(e).__name__}: {e}); {CONTEXT_FIX}") from e
    if label_map is None:
        raise OvbenchError(f"{path}: holds no 'LabelMap'; {CONTEXT_FIX}")
    if label_map.ndim != 2 or not label_map.size or label_map.dtype.kind not in "ui":
        raise OvbenchError(f"{path}: 'LabelMap' is {label_map.dtype} of shape {label_map.shape}, expected a 2-D "
                           f"integer array; {CONTEXT_FIX}")
    low, high = int(label_map.min()), int(label_map.max())
    if low < 0 or high > NUM_LABELS:
        raise OvbenchError(f"{path}: LabelMap value {low if low < 0 else high} is no labels.txt id (0 unlabelled, "
                           f"1..{NUM_LABELS}); {CONTEXT_FIX}")
    check_size(path, label_map.shape, image_size(root / IMAGES / f"{image_id}.jpg", "JPEG", VOC_FIX), CONTEXT_FIX)
    return label_map


def _json_bytes(obj: Any) -> bytes:
    """Indented JSON with a final newline: the bytes :func:`ovbench.prepare.jsonio.write_json` writes."""
    return (json.dumps(obj, indent=2, separators=(",", ": "), allow_nan=False) + "\n").encode()


def _notes(num_images: int) -> tuple[str, ...]:
    notes = [f"annotations_ctx459: labels.txt id - 1, unlabelled {IGNORE_459}; annotations_ctx59: the 59 labels of "
             f"{PROTOCOL_59} -> 0..58 in labels.txt-id order, unlabelled and the 400 other labels {IGNORE_59}",
             f"{CLASS_TABLE_OUT} (the class table of {PROTOCOL_459}): labels.txt names; the 59 labels shared with "
             f"{PROTOCOL_59} take its prompt names and synonyms",
             "published PASCAL-Context results (Detail API / pascalcontext_val.txt preparations) use 5104 of "
             f"the {OFFICIAL_VAL} VOC2010 val images"]
    if num_images != OFFICIAL_VAL:
        notes.insert(0, f"val.txt lists {num_images} images, the official list {OFFICIAL_VAL}; results are not "
                        "comparable with the official val set")
    return tuple(notes)


PREPARER = Preparer(
    name="pascal-context",
    help="PASCAL-Context val (VOC2010 images, trainval/*.mat) -> pascal-context-59 and -459 label maps and the "
         "459-class table",
    inputs=(InputFile(VAL_LIST, "VOC2010 Main val list (5105 ids, PASCAL-Context's val set)", VOC_SOURCE),
            InputFile(IMAGES + "/", "VOC2010 images (<id>.jpg)", VOC_SOURCE),
            InputFile(MATS + "/", "PASCAL-Context full annotations (<id>.mat with LabelMap)", CONTEXT_SOURCE),
            InputFile(LABELS_TXT, "PASCAL-Context label names (<id>: <name>, 459 lines)", CONTEXT_SOURCE)),
    outputs=(IMAGES_OUT + "/", CTX459_OUT + "/", CTX59_OUT + "/", CLASS_TABLE_OUT),
    run=run,
    protocols=("pascal-context-59", "pascal-context-459"))

__all__ = ["PREPARER", "class_table", "read_labels_txt"]
