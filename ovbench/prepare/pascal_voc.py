"""``ovbench data prepare pascal-voc``: PASCAL VOC 2012 segmentation val -> protocol pascal-voc-20.

Inputs, below ``--root`` (the official ``VOCtrainval_11-May-2012.tar`` unpacked there):

- ``VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt``: one image id per line (1449 in the release);
- ``VOCdevkit/VOC2012/JPEGImages/<id>.jpg``;
- ``VOCdevkit/VOC2012/SegmentationClass/<id>.png``: palette (mode ``P``) PNGs whose palette
  indices are the labels: 0 background, 1..20 the VOC classes in VOC order, 255 the void border.

Outputs, below ``--root/pascal_voc_d2/`` (the layout fc-clip/ODISE's preparation writes):

- ``images/validation/<id>.jpg``: a hard link to the JPEG (a copy where the filesystem refuses);
- ``annotations_pascal20/validation/<id>.png``: uint8 (mode ``L``), pixel = VOC label - 1 (0..19),
  background (0) and void (255) both 255: VOC-20, background is not a class.

Every listed image is checked (JPEG header, PNG mode, label values, sizes) before anything is
written; each output is written atomically, a file whose bytes would not change is left alone,
and stale files below the two output folders are removed.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ovbench.data.label_io import LabelDecodeError, decode_label_map
from ovbench.errors import OvbenchError
from ovbench.prepare.base import FileSummary, InputFile, Preparer, PrepareReport
from ovbench.prepare.files import (check_size, class_counts, image_counts, image_size, label_table, link_or_copy,
                                   png_bytes, read_id_list, remove_stale, require_files, write_counts,
                                   write_if_changed)
from ovbench.protocols import get_protocol

PROTOCOL = "pascal-voc-20"
VOC = "VOCdevkit/VOC2012"
VAL_LIST = f"{VOC}/ImageSets/Segmentation/val.txt"
IMAGES = f"{VOC}/JPEGImages"
LABELS = f"{VOC}/SegmentationClass"
OUT = "pascal_voc_d2"
IMAGES_OUT = f"{OUT}/images/validation"
LABELS_OUT = f"{OUT}/annotations_pascal20/validation"
#: Images in the official VOC2012 ImageSets/Segmentation/val.txt.
OFFICIAL_VAL = 1449
VOID = 255
NUM_LABELS = 21  # palette indices 0..20 are labels, 255 is the void border
SOURCE = ("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar "
          "(unpack it into --root: it holds VOCdevkit/VOC2012/)")
FIX = f"use the official VOC2012 files: {SOURCE}"


def run(root: Path, progress: bool = True) -> PrepareReport:
    """Check every val image and label, then link the images and write the label maps (module docstring)."""
    lut = label_table(get_protocol(PROTOCOL).definition["dataset_ids"], size=256, ignore=VOID, dtype=np.uint8)
    ids = read_id_list(root / VAL_LIST, FIX)
    require_files(root, ids, (f"{IMAGES}/{{id}}.jpg", f"{LABELS}/{{id}}.png"), "pascal-voc", FIX)
    present = np.zeros(256, bool)
    for image_id in tqdm(ids, desc="pascal-voc check", unit="image", disable=not progress):
        present[np.flatnonzero(np.bincount(_checked_label(root, image_id).ravel(), minlength=256))] = True
    images: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    for image_id in tqdm(ids, desc="pascal-voc write", unit="image", disable=not progress):
        images[link_or_copy(root / IMAGES / f"{image_id}.jpg", root / IMAGES_OUT / f"{image_id}.jpg")] += 1
        label = np.take(lut, _checked_label(root, image_id))
        labels[write_if_changed(root / LABELS_OUT / f"{image_id}.png", png_bytes(label))] += 1
    stale_images = remove_stale(root / IMAGES_OUT, {f"{i}.jpg" for i in ids})
    stale_labels = remove_stale(root / LABELS_OUT, {f"{i}.png" for i in ids})
    notes = ["background (VOC label 0) and the void border (255) are both 255 (ignored); class id = VOC label - 1"]
    if len(ids) != OFFICIAL_VAL:
        notes.insert(0, f"val.txt lists {len(ids)} images, the official list {OFFICIAL_VAL}; results are not "
                        "comparable with the official val set")
    return PrepareReport(name=PREPARER.name, root=root, notes=tuple(notes), files=(
        FileSummary(VAL_LIST, "checked", {"images": len(ids)}),
        FileSummary(IMAGES_OUT, "wrote", image_counts(len(ids), images, stale_images)),
        FileSummary(LABELS_OUT, "wrote", {"images": len(ids), **class_counts(lut[present], VOID),
                                     **write_counts(labels, stale_labels)})))


def _checked_label(root: Path, image_id: str) -> np.ndarray:
    """The palette indices (uint8, shape (H, W)) of ``image_id``'s SegmentationClass PNG, checked."""
    path = root / LABELS / f"{image_id}.png"
    try:
        arr, mode = decode_label_map(path.read_bytes())
    except (OSError, LabelDecodeError) as e:
        raise OvbenchError(f"{path}: not a VOC SegmentationClass PNG ({e}); {FIX}") from e
    if mode != "P":
        raise OvbenchError(f"{path}: mode {mode}; VOC SegmentationClass PNGs are palette (mode P) images whose "
                           f"indices are the labels (SegmentationClassAug or re-encoded files are not); {FIX}")
    counts = np.bincount(arr.ravel(), minlength=256)
    bad = np.flatnonzero(counts[NUM_LABELS:VOID])
    if bad.size:
        raise OvbenchError(f"{path}: palette index {int(bad[0]) + NUM_LABELS} is no VOC label (0 background, "
                           f"1..20 classes, 255 void); {FIX}")
    check_size(path, arr.shape, image_size(root / IMAGES / f"{image_id}.jpg", "JPEG", FIX), FIX)
    return arr


PREPARER = Preparer(
    name="pascal-voc",
    help="PASCAL VOC 2012 segmentation val -> pascal-voc-20 images and label maps (background ignored)",
    inputs=(InputFile(VAL_LIST, "VOC2012 segmentation val list (1449 ids)", SOURCE),
            InputFile(IMAGES + "/", "VOC2012 images (<id>.jpg)", SOURCE),
            InputFile(LABELS + "/", "VOC2012 class segmentations (<id>.png, palette PNGs)", SOURCE)),
    outputs=(IMAGES_OUT + "/", LABELS_OUT + "/"),
    run=run,
    protocols=("pascal-voc-20",))

__all__ = ["PREPARER"]
