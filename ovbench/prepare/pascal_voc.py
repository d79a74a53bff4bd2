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

The module also holds the file helpers the ``pascal-context`` and ``cityscapes`` preparers share
(id lists, image headers, hard links, atomic byte writes, stale-file removal).
"""
from __future__ import annotations

import filecmp
import io
import os
import secrets
import shutil
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ovbench.data.label_io import LabelDecodeError, decode_label_map
from ovbench.errors import OvbenchError, ValidationError
from ovbench.prepare.base import FileSummary, InputFile, Preparer, PrepareReport
from ovbench.protocols import get_protocol
from ovbench.records.store import atomic_write

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


# ------------------------------------------------ helpers shared with pascal_context and cityscapes


def label_table(dataset_ids: Sequence[int], size: int, ignore: int, dtype: type) -> np.ndarray:
    """Lookup table of ``size`` entries: dataset value ``dataset_ids[k]`` -> class id ``k``, others ``ignore``."""
    lut = np.full(size, ignore, dtype)
    lut[np.asarray(dataset_ids)] = np.arange(len(dataset_ids))
    return lut


def read_id_list(path: Path, fix: str) -> list[str]:
    """The image ids of an ImageSets list (one id per line, blank lines skipped), in file order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise OvbenchError(f"{path}: cannot read it ({e}); {fix}") from e
    ids = [line.strip() for line in lines if line.strip()]
    odd = next((i for i in ids if len(i.split()) != 1), None)
    if odd is not None:
        raise OvbenchError(f"{path}: line {odd!r} is not one image id (a per-class list such as aeroplane_val.txt?); "
                           f"{fix}")
    dup = next((i for i, k in Counter(ids).items() if k > 1), None)
    if dup is not None:
        raise OvbenchError(f"{path}: image id {dup} is listed twice; {fix}")
    if not ids:
        raise OvbenchError(f"{path}: lists no image; {fix}")
    return ids


def require_files(root: Path, ids: Sequence[str], templates: Sequence[str], dataset: str, fix: str) -> None:
    """Raise one :class:`ValidationError` naming every ``root / template.format(id=...)`` that is not a file."""
    problems = [f"{root / t.format(id=i)} not found" for i in ids for t in templates
                if not (root / t.format(id=i)).is_file()]
    if problems:
        raise ValidationError(f"dataset {dataset}: {len(problems)} file(s) of the listed images are missing below "
                              f"{root}", problems, fix=fix)


def image_size(path: Path, image_format: str, fix: str) -> tuple[int, int]:
    """``(width, height)`` of an image read from its header; it must be in ``image_format`` (PIL's name)."""
    try:
        with Image.open(path) as im:
            size, found = im.size, im.format
    except Exception as e:  # PIL raises many types for truncated or foreign files
        raise OvbenchError(f"{path}: cannot read the image ({type(e).__name__}: {e}); {fix}") from e
    if found != image_format:
        raise OvbenchError(f"{path}: a {found} file, expected {image_format}; {fix}")
    return size


def check_size(label_path: Path, shape: tuple[int, ...], size: tuple[int, int], fix: str) -> None:
    """Raise unless a label map of ``shape`` (H, W) fits its image of ``size`` (W, H)."""
    if (shape[1], shape[0]) != size:
        raise OvbenchError(f"{label_path}: {shape[1]}x{shape[0]}, its image is {size[0]}x{size[1]}; both must come "
                           f"from the same release; {fix}")


def png_bytes(label: np.ndarray) -> bytes:
    """A uint8 label map of shape (H, W) as a single-channel (mode L) PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_if_changed(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically unless it already holds them: ``"written"`` or ``"unchanged"``."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return "unchanged"
    except OSError:
        pass
    atomic_write(path, lambda f: f.write(data))
    return "written"


def link_or_copy(src: Path, dst: Path) -> str:
    """Make ``dst`` hold ``src``'s bytes: ``"unchanged"`` (it already does), ``"linked"`` or ``"copied"``.

    A hard link is made under a temporary name and renamed into place; where the filesystem
    refuses hard links (another device, no support) the file is copied atomically instead.
    """
    if dst.is_file() and (os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False)):
        return "unchanged"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        with open(src, "rb") as f:
            atomic_write(dst, lambda out: shutil.copyfileobj(f, out))
        return "copied"
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return "linked"


def remove_stale(folder: Path, keep: set[str]) -> int:
    """Delete the files directly in ``folder`` (an output folder of ours) whose names are not in ``keep``."""
    stale = [p for p in folder.iterdir() if p.is_file() and p.name not in keep] if folder.is_dir() else []
    for p in stale:
        p.unlink()
    return len(stale)


def class_counts(classes: np.ndarray, ignore: int) -> dict[str, int]:
    """``classes_present``, ``min_class``, ``max_class`` (-1 when none) of the class ids in ``classes``."""
    ids = np.unique(classes[classes != ignore])
    return {"classes_present": int(ids.size), "min_class": int(ids[0]) if ids.size else -1,
            "max_class": int(ids[-1]) if ids.size else -1}


def write_counts(actions: Mapping[str, int], stale: int) -> dict[str, int]:
    """Counts of written and unchanged label files and removed stale ones."""
    return {"written": actions.get("written", 0), "unchanged": actions.get("unchanged", 0), "stale_removed": stale}


def image_counts(n: int, actions: Mapping[str, int], stale: int) -> dict[str, int]:
    """Counts of linked, copied and unchanged images and removed stale ones."""
    return {"images": n, **{k: actions.get(k, 0) for k in ("linked", "copied", "unchanged")}, "stale_removed": stale}


PREPARER = Preparer(
    name="pascal-voc",
    help="PASCAL VOC 2012 segmentation val -> pascal-voc-20 images and label maps (background ignored)",
    inputs=(InputFile(VAL_LIST, "VOC2012 segmentation val list (1449 ids)", SOURCE),
            InputFile(IMAGES + "/", "VOC2012 images (<id>.jpg)", SOURCE),
            InputFile(LABELS + "/", "VOC2012 class segmentations (<id>.png, palette PNGs)", SOURCE)),
    outputs=(IMAGES_OUT + "/", LABELS_OUT + "/"),
    run=run,
    protocols=("pascal-voc-20",))

__all__ = ["PREPARER", "check_size", "class_counts", "image_counts", "image_size", "label_table", "link_or_copy",
           "png_bytes", "read_id_list", "remove_stale", "require_files", "write_counts", "write_if_changed"]
