"""``ovbench data prepare cityscapes``: Cityscapes gtFine label ids -> train ids (protocol cityscapes-19).

Inputs, below ``--root`` (``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` from
https://www.cityscapes-dataset.com/downloads/ unpacked into ``--root/cityscapes/``):

- ``cityscapes/leftImg8bit/val/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` (2048x1024 RGB PNGs);
- ``cityscapes/gtFine/val/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png``: 8-bit PNGs of
  Cityscapes label ids 0..33 (``license plate``, id -1, is never drawn into them);
- the same for ``train`` when both ``gtFine/train/`` and ``leftImg8bit/train/`` are present
  (optional: the protocol reads val only).

Outputs, next to each label-id file: ``..._gtFine_labelTrainIds.png`` (uint8, mode ``L``), the
files cityscapesScripts' ``createTrainIdLabelImgs`` writes: the 19 label ids of the protocol's
``dataset_ids`` (7, 8, 11, ..., 33, cityscapesScripts ``helpers/labels.py``) -> train ids 0..18 in
that order, every other id (void, ``ignoreInEval``) 255. Mapping the label-id image pixel by pixel
gives what ``createTrainIdLabelImgs`` draws from the polygons, which it draws in the same order.

Every image and label-id file of the prepared splits is checked (pairs, PNG headers, values, sizes)
before anything is written; each output is written atomically and a file whose bytes would not
change is left alone.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ovbench.data.label_io import LabelDecodeError, decode_label_map
from ovbench.errors import OvbenchError, ValidationError
from ovbench.prepare.base import FileSummary, InputFile, Preparer, PrepareReport
from ovbench.prepare.files import check_size, class_counts, image_size, label_table, png_bytes, write_if_changed
from ovbench.protocols import get_protocol

PROTOCOL = "cityscapes-19"
IMAGES = "cityscapes/leftImg8bit"
GT = "cityscapes/gtFine"
IMAGE_SUFFIX = "_leftImg8bit.png"
IDS_SUFFIX = "_gtFine_labelIds.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
#: Images per split in the official release (val: frankfurt, lindau, munster).
OFFICIAL = {"val": 500, "train": 2975}
MAX_ID = 33
IGNORE = 255
SOURCE = ("https://www.cityscapes-dataset.com/downloads/ (registration): leftImg8bit_trainvaltest.zip and "
          "gtFine_trainvaltest.zip, unpacked into --root/cityscapes/")
FIX = f"use the official Cityscapes files: {SOURCE}"


def run(root: Path, progress: bool = True) -> PrepareReport:
    """Check the val (and train, when present) pairs, then write every labelTrainIds PNG (module docstring)."""
    dataset_ids = get_protocol(PROTOCOL).definition["dataset_ids"]
    lut = label_table(dataset_ids, size=MAX_ID + 1, ignore=IGNORE, dtype=np.uint8)
    splits = ["val"] + (["train"] if (root / GT / "train").is_dir() and (root / IMAGES / "train").is_dir() else [])
    frames = {split: _checked_pairs(root, split) for split in splits}
    present = {split: np.zeros(MAX_ID + 1, bool) for split in splits}
    for split in splits:
        for frame in tqdm(frames[split], desc=f"cityscapes {split} check", unit="image", disable=not progress):
            present[split][np.flatnonzero(np.bincount(_checked_label_ids(root, split, frame).ravel()))] = True
    files = []
    for split in splits:
        actions: Counter[str] = Counter()
        for frame in tqdm(frames[split], desc=f"cityscapes {split} write", unit="image", disable=not progress):
            train_ids = np.take(lut, _checked_label_ids(root, split, frame))
            actions[write_if_changed(root / GT / split / f"{frame}{TRAIN_IDS_SUFFIX}", png_bytes(train_ids))] += 1
        files.append(FileSummary(f"{GT}/{split}", "wrote", {
            "images": len(frames[split]), "cities": len({f.split("/")[0] for f in frames[split]}),
            **class_counts(lut[present[split]], IGNORE),
            "written": actions["written"], "unchanged": actions["unchanged"]}))
    notes = [f"{split}: {len(frames[split])} images, the official {split} set {OFFICIAL[split]}; results are not "
             f"comparable with the official {split} set" for split in splits if len(frames[split]) != OFFICIAL[split]]
    if "train" not in splits:
        notes.append(f"train not prepared: {GT}/train/ and {IMAGES}/train/ are not both present (optional)")
    notes.append(f"*{TRAIN_IDS_SUFFIX}: label ids {', '.join(map(str, dataset_ids))} -> train ids "
                 f"0..{len(dataset_ids) - 1}, every other id {IGNORE}")
    return PrepareReport(name=PREPARER.name, root=root, files=tuple(files), notes=tuple(notes))


def _checked_pairs(root: Path, split: str) -> list[str]:
    """Sorted ``<city>/<frame>`` ids of ``split``, each with its image and label-id file, or one ValidationError."""
    gt_dir, image_dir = root / GT / split, root / IMAGES / split
    labels = {p.relative_to(gt_dir).as_posix()[: -len(IDS_SUFFIX)] for p in gt_dir.glob(f"*/*{IDS_SUFFIX}")}
    images = {p.relative_to(image_dir).as_posix()[: -len(IMAGE_SUFFIX)] for p in image_dir.glob(f"*/*{IMAGE_SUFFIX}")}
    problems = [f"{gt_dir / (f + IDS_SUFFIX)} not found (the label ids of {image_dir / (f + IMAGE_SUFFIX)})"
                for f in sorted(images - labels)]
    problems += [f"{image_dir / (f + IMAGE_SUFFIX)} not found (the image of {gt_dir / (f + IDS_SUFFIX)})"
                 for f in sorted(labels - images)]
    if not labels and not images:
        problems.append(f"no <city>/*{IDS_SUFFIX} below {gt_dir} and no <city>/*{IMAGE_SUFFIX} below {image_dir}")
    if problems:
        raise ValidationError(f"dataset cityscapes: the {split} split below {root} is incomplete", problems, fix=FIX)
    return sorted(labels)


def _checked_label_ids(root: Path, split: str, frame: str) -> np.ndarray:
    """The label ids (0..33, shape (H, W) of the image) of one ``*_gtFine_labelIds.png``."""
    path = root / GT / split / f"{frame}{IDS_SUFFIX}"
    try:
        label_ids, _ = decode_label_map(path.read_bytes())
    except (OSError, LabelDecodeError) as e:
        raise OvbenchError(f"{path}: not a Cityscapes labelIds PNG ({e}); {FIX}") from e
    low, high = int(label_ids.min()), int(label_ids.max())
    if low < 0 or high > MAX_ID:
        raise OvbenchError(f"{path}: value {low if low < 0 else high} is no Cityscapes label id (0..{MAX_ID}); {FIX}")
    check_size(path, label_ids.shape, image_size(root / IMAGES / split / f"{frame}{IMAGE_SUFFIX}", "PNG", FIX), FIX)
    return label_ids


PREPARER = Preparer(
    name="cityscapes",
    help="Cityscapes gtFine labelIds -> labelTrainIds PNGs (val, and train when present) for cityscapes-19",
    inputs=(InputFile(IMAGES + "/val/", "Cityscapes val images (<city>/<frame>_leftImg8bit.png)", SOURCE),
            InputFile(GT + "/val/", "Cityscapes val fine annotations (<city>/<frame>_gtFine_labelIds.png)", SOURCE)),
    outputs=(f"{GT}/val/<city>/<frame>{TRAIN_IDS_SUFFIX}", f"{GT}/train/<city>/<frame>{TRAIN_IDS_SUFFIX}"),
    run=run,
    protocols=("cityscapes-19",))

__all__ = ["PREPARER"]
