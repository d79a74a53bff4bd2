"""``ovbench data prepare ade20k-full``: the ADE20K full release -> protocol ade-847.

Inputs, below ``--root`` (``ADE20K_2021_17_01.zip`` from the ADE20K site unpacked there):

- ``ADE20K_2021_17_01/index_ade20k.pkl``: a pickled dict; this reads its lists ``filename``
  (``ADE_val_00000001.jpg``, ...), ``folder`` (``ADE20K_2021_17_01/images/ADE/validation/<scene
  folders>``, relative to ``--root``) and ``objectnames`` (the object class names);
- ``ADE20K_2021_17_01/images/ADE/validation/.../<name>.jpg`` and ``<name>_seg.png`` (RGB): the object
  index of a pixel is ``R // 10 * 256 + G``, 0 = unlabelled, k = ``objectnames[k - 1]``;
- the same below ``images/ADE/training/`` (optional: the protocol evaluates validation; when the
  folder is there, every training image of the index is prepared too).

An image is in validation when the second ``_``-separated part of its file name is ``val``, as in
MaskFormer's ``datasets/prepare_ade20k_full_sem_seg.py``; the release has 25574 training and 2000
validation images. ADE-847 keeps 847 object classes in the trainId order of that script; their object
indices are stored in ``ovbench/prepare/tables/ade847_object_ids.json`` (with its provenance); their
names are read from the download's own ``objectnames``.

Outputs, below ``--root/ADE20K_2021_17_01/`` (what ade-847 reads, validation):

- ``ovbench_classes.json``: the class table, a JSON list in class-id order of ``{"name",
  "synonyms", "dataset_name"}``: ``dataset_name`` is the ``objectnames`` string, ``name`` its first
  comma-separated item, ``synonyms`` the other items (stripped, without repeats or the name);
- ``images_detectron2/<split>/<id>.jpg``: the image at the size below, ``<id>`` the image file's stem;
  an image the rule leaves alone is a hard link to the release's file (a copy where the filesystem
  refuses);
- ``annotations_detectron2/<split>/<id>.tif``: uint16 TIFF (mode ``I;16``) of the image's size,
  pixel = class id 0..846, 65535 = unlabelled or an object outside the 847.

Sizes follow MaskFormer's script, which made the images and labels behind the published ADE-847
numbers: an image whose shorter side exceeds 512 px is shrunk to :func:`maskformer_size` (shorter
side 512). Its label is resized as ``cv2.resize(..., INTER_NEAREST)`` does, pixel for pixel
(:func:`nearest_indices`; the script resizes the object indices and then maps them to class ids,
which for nearest-neighbour gives the same map as the other order). The image is resampled
bilinearly at the source positions ``cv2.resize(..., INTER_LINEAR)`` samples, without antialiasing
(:func:`shrink_image`: values within 1 of cv2's, checked against opencv-python 5.0 on photographs and
noise, so the file is not byte-identical to the script's), and saved as JPEG with Pillow's default
settings (quality 75), the call the script makes. The script also decodes and re-saves the images it
does not shrink; here those stay links.

The index, the class table and every listed image with its ``_seg.png`` (present, decodable, the
image's size, object indices within ``objectnames``; an image to shrink decoded in full) are checked
before anything is written; each output is written atomically, a file whose bytes would not change is
left alone (Pillow's JPEG encoding is deterministic, so a re-run rewrites no shrunk image), and stale
files below the output folders are removed. Image counts other than the release's are reported as
notes.
"""
from __future__ import annotations

import io
import json
import pickle
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ovbench.errors import OvbenchError, ValidationError
from ovbench.prepare.base import FileSummary, InputFile, Preparer, PrepareReport
from ovbench.prepare.files import (check_size, class_counts, link_or_copy, remove_stale, tiff_bytes, write_counts,
                                   write_if_changed)

PROTOCOL = "ade-847"
DATASET = "ADE20K_2021_17_01"
INDEX = f"{DATASET}/index_ade20k.pkl"
IMAGES = f"{DATASET}/images/ADE"
CLASS_TABLE_OUT = f"{DATASET}/ovbench_classes.json"
IMAGES_OUT = f"{DATASET}/images_detectron2"
LABELS_OUT = f"{DATASET}/annotations_detectron2"
OBJECT_IDS = Path(__file__).parent / "tables" / "ade847_object_ids.json"
SPLITS = ("validation", "training")
#: Images per split in ADE20K_2021_17_01's index.
OFFICIAL = {"training": 25574, "validation": 2000}
NUM_CLASSES = 847
IGNORE = 65535
#: Shorter side (px) above which MaskFormer's script shrinks an image, and the side it shrinks it to.
MAX_SHORT_SIDE = 512
#: Pillow's default JPEG quality: MaskFormer's script saves with ``Image.fromarray(img).save(path)``.
JPEG_QUALITY = 75
INDEX_KEYS = ("filename", "folder", "objectnames")
SOURCE = ("https://groups.csail.mit.edu/vision/datasets/ADE20K/ (registration): ADE20K_2021_17_01.zip, unpacked "
          "into --root")
FIX = f"use the official ADE20K full release: {SOURCE}"


@dataclass(frozen=True)
class Entry:
    """One image of the index: its id (file stem) and its ``.jpg`` / ``_seg.png`` paths."""

    id: str
    image: Path
    seg: Path


def run(root: Path, progress: bool = True) -> PrepareReport:
    """Check the index, the class table and every listed image, then write the outputs (module docstring)."""
    object_ids = load_object_ids()
    filenames, folders, objectnames = read_index(root / INDEX)
    table = class_table(objectnames, object_ids, root / INDEX)
    splits = [s for s in SPLITS if s == "validation" or (root / IMAGES / s).is_dir()]
    entries = _listed_entries(root, filenames, folders, splits)
    lut = np.full(len(objectnames) + 1, IGNORE, np.uint16)
    lut[object_ids] = np.arange(NUM_CLASSES)
    present = {split: np.zeros(len(objectnames) + 1, bool) for split in splits}
    resized: Counter[str] = Counter()
    for split in splits:
        for entry in tqdm(entries[split], desc=f"ade20k-full {split} check", unit="image", disable=not progress):
            mask = _checked_class_mask(entry, len(objectnames))
            height, width = mask.shape
            if maskformer_size(width, height) != (width, height):
                _decoded_image(entry.image)
                resized[split] += 1
            present[split][np.flatnonzero(np.bincount(mask.ravel()))] = True

    table_action = write_if_changed(root / CLASS_TABLE_OUT, _json_bytes(table))
    files = [FileSummary(INDEX, "checked", {"images": len(filenames), "objectnames": len(objectnames)}),
             FileSummary(CLASS_TABLE_OUT, "wrote", {"classes": len(table),
                                               "distinct_names": len({row["name"] for row in table}),
                                               "unchanged": int(table_action == "unchanged")})]
    for split in splits:
        files += _write_split(root, split, entries[split], lut, present[split], resized[split], progress)
    return PrepareReport(name=PREPARER.name, root=root, files=tuple(files),
                         notes=_notes({s: len(entries[s]) for s in splits}, resized))


def load_object_ids() -> list[int]:
    """ADE-847's object indices in class-id order, from the package's ``tables/ade847_object_ids.json``."""
    try:
        ids = json.loads(OBJECT_IDS.read_text())["object_ids"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise OvbenchError(f"{OBJECT_IDS}: cannot read ADE-847's object indices ({e}); reinstall ovbench") from e
    if (len(ids) != NUM_CLASSES or len(set(ids)) != NUM_CLASSES
            or not all(isinstance(i, int) and i > 0 for i in ids)):
        raise OvbenchError(f"{OBJECT_IDS}: expected {NUM_CLASSES} distinct positive object indices; reinstall ovbench")
    return ids


def read_index(path: Path) -> tuple[list[str], list[str], list[str]]:
    """``(filename, folder, objectnames)`` of index_ade20k.pkl, checked to be lists of strings.

    The file is unpickled as the ADE20K toolkit does (unpickling can run code: use the official file).
    """
    try:
        with open(path, "rb") as f:
            index = pickle.load(f)
    except Exception as e:  # pickle raises many types for truncated or foreign files
        raise OvbenchError(f"{path}: cannot unpickle it ({type(e).__name__}: {e}); {FIX}") from e
    if not isinstance(index, Mapping):
        raise OvbenchError(f"{path}: holds a {type(index).__name__}, not the index dict; {FIX}")
    missing = [k for k in INDEX_KEYS if k not in index]
    if missing:
        raise OvbenchError(f"{path}: no key {', '.join(map(repr, missing))}; not ADE20K_2021_17_01's index; {FIX}")
    filenames, folders, objectnames = (_strings(index[k], k, path) for k in INDEX_KEYS)
    if len(filenames) != len(folders):
        raise OvbenchError(f"{path}: {len(filenames)} filenames but {len(folders)} folders; {FIX}")
    return filenames, folders, objectnames


def class_table(objectnames: Sequence[str], object_ids: Sequence[int], index_path: Path) -> list[dict[str, Any]]:
    """The rows of ``ovbench_classes.json`` (module docstring): ``objectnames[i - 1]`` for each object index i."""
    beyond = [i for i in object_ids if i > len(objectnames)]
    if beyond:
        raise OvbenchError(f"{index_path}: {len(objectnames)} objectnames, but ADE-847 uses object index "
                           f"{max(beyond)}; not ADE20K_2021_17_01's index; {FIX}")
    rows = []
    for k, i in enumerate(object_ids):
        items = [item.strip() for item in objectnames[i - 1].split(",") if item.strip()]
        if not items:
            raise OvbenchError(f"{index_path}: objectnames[{i - 1}] (ADE-847 class {k}) is empty; {FIX}")
        synonyms = list(dict.fromkeys(s for s in items[1:] if s != items[0]))
        rows.append({"name": items[0], "synonyms": synonyms, "dataset_name": objectnames[i - 1]})
    return rows


def split_of(filename: str) -> str:
    """``"validation"`` when the second ``_``-separated part of ``filename`` is ``val``, else ``"training"``."""
    parts = filename.split("_")
    return "validation" if len(parts) > 1 and parts[1] == "val" else "training"


def maskformer_size(width: int, height: int) -> tuple[int, int]:
    """The ``(width, height)`` (px) MaskFormer's script gives an image of ``width`` x ``height`` px.

    Unchanged unless the shorter side exceeds 512; then the shorter side becomes 512 and the longer
    ``round(longer / shorter * 512)``, computed in floating point as the script does, with Python's
    ``round`` (an exact half goes to the even integer: 1025 x 1024 -> 512 x 512). A square image
    takes the landscape branch (``w >= h``), which gives the same result.
    """
    if min(width, height) <= MAX_SHORT_SIDE:
        return width, height
    if width >= height:
        return round(width / height * MAX_SHORT_SIDE), MAX_SHORT_SIDE
    return MAX_SHORT_SIDE, round(height / width * MAX_SHORT_SIDE)


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """For each of ``dst`` output indices, the source index (int64, shape (dst,), 0..src-1) that
    ``cv2.resize(..., INTER_NEAREST)`` copies along an axis of ``src`` pixels.

    cv2 takes ``floor(i * (1 / (dst / src)))`` in double precision, clamped to ``src - 1``. The
    double reciprocal matters: where ``i * src / dst`` is an integer it can land one below it
    (2200 -> 768: output 288 copies source 824, not 825).
    """
    return np.minimum(np.floor(np.arange(dst) * (1.0 / (dst / src))).astype(np.int64), src - 1)


def resize_nearest(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``label`` (shape (H, W), any dtype) resized to ``size`` (W', H') as cv2's INTER_NEAREST does:
    a new array of shape (H', W') and the same dtype."""
    rows = nearest_indices(label.shape[0], size[1])
    cols = nearest_indices(label.shape[1], size[0])
    return label[rows[:, None], cols[None, :]]


def shrink_image(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """``image`` resampled to ``size`` (W', H') px as cv2's INTER_LINEAR does: output pixel (x, y)
    interpolates bilinearly at source position ((x + 0.5) * W / W' - 0.5, (y + 0.5) * H / H' - 0.5),
    edges clamped, without the antialiasing of ``Image.resize`` (which averages over the whole
    footprint when shrinking). Values come within 1 of cv2's (its fixed-point rounding differs)."""
    scale_x, scale_y = image.width / size[0], image.height / size[1]
    return image.transform(size, Image.AFFINE, (scale_x, 0, 0, 0, scale_y, 0), resample=Image.BILINEAR)


def shrunk_jpeg(path: Path, size: tuple[int, int]) -> bytes:
    """The JPEG bytes (quality 75) of the image at ``path`` shrunk to ``size`` (W', H') px by
    :func:`shrink_image`, in mode L or RGB (:func:`_decoded_image`)."""
    buf = io.BytesIO()
    shrink_image(_decoded_image(path), size).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _strings(value: Any, key: str, path: Path) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise OvbenchError(f"{path}: {key!r} is a {type(value).__name__}, not a list of strings; {FIX}")
    bad = next((v for v in value if not isinstance(v, str)), None)
    if bad is not None:
        raise OvbenchError(f"{path}: {key!r} holds a {type(bad).__name__} ({bad!r}), not only strings; {FIX}")
    return [str(v) for v in value]


def _listed_entries(root: Path, filenames: Sequence[str], folders: Sequence[str],
                    splits: Sequence[str]) -> dict[str, list[Entry]]:
    """The index's images of ``splits``, sorted by id; one :class:`ValidationError` naming every
    file missing, every folder outside ``ADE20K_2021_17_01/images/`` and every id listed twice."""
    problems: list[str] = []
    entries: dict[str, list[Entry]] = {split: [] for split in splits}
    for filename, folder in zip(filenames, folders):
        split = split_of(filename)
        if split not in entries:
            continue
        parts = Path(folder).parts
        if Path(folder).is_absolute() or ".." in parts or parts[:2] != (DATASET, "images"):
            problems.append(f"{root / INDEX}: folder {folder!r} of {filename} is not below {DATASET}/images/")
            continue
        image = root / folder / filename
        entries[split].append(Entry(Path(filename).stem, image, image.with_name(f"{image.stem}_seg.png")))
    for split, listed in entries.items():
        if not listed:
            problems.append(f"{root / INDEX}: lists no {split} image")
        for image_id, n in Counter(e.id for e in listed).items():
            if n > 1:
                problems.append(f"{root / INDEX}: {split} image {image_id} is listed {n} times")
        problems += [f"{p} not found" for e in listed for p in (e.image, e.seg) if not p.is_file()]
        listed.sort(key=lambda e: e.id)
    if problems:
        raise ValidationError(f"dataset ade20k-full: the index's images are not all below {root / DATASET}", problems,
                              fix=f"{FIX}; unpack the whole zip (images with their _seg.png) next to index_ade20k.pkl")
    return entries


def _checked_class_mask(entry: Entry, num_objects: int) -> np.ndarray:
    """The object indices (int32, shape (H, W), 0..``num_objects``) of ``entry``'s ``_seg.png``, checked."""
    try:
        with Image.open(entry.seg) as im:
            mode = im.mode
            seg = np.asarray(im) if mode in ("RGB", "RGBA") else None
    except Exception as e:  # PIL raises many types for truncated or foreign files
        raise OvbenchError(f"{entry.seg}: cannot read it as a PNG ({type(e).__name__}: {e}); {FIX}") from e
    if seg is None:
        raise OvbenchError(f"{entry.seg}: mode {mode}; an ADE20K _seg.png is RGB (object index R // 10 * 256 + G, "
                           f"instance in B); {FIX}")
    mask = (seg[..., 0] // 10).astype(np.int32) * 256 + seg[..., 1]
    high = int(mask.max())
    if high > num_objects:
        raise OvbenchError(f"{entry.seg}: object index {high} (R // 10 * 256 + G) is beyond the {num_objects} "
                           f"objectnames of index_ade20k.pkl; {FIX}")
    check_size(entry.seg, mask.shape, _image_size(entry.image), FIX)
    return mask


def _image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image, read from its header."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # PIL raises many types for truncated or foreign files
        raise OvbenchError(f"{path}: cannot read the image ({type(e).__name__}: {e}); {FIX}") from e


def _decoded_image(path: Path) -> Image.Image:
    """The image at ``path`` decoded in full (a truncated file fails here), in mode L or RGB: those two
    kept, as the script's array round trip keeps them; other modes converted to RGB."""
    try:
        with Image.open(path) as im:
            return im.convert(im.mode if im.mode in ("L", "RGB") else "RGB")
    except Exception as e:  # PIL raises many types for truncated or foreign files
        raise OvbenchError(f"{path}: cannot decode the image ({type(e).__name__}: {e}); {FIX}") from e


def _write_image(src: Path, dst: Path, size: tuple[int, int]) -> str:
    """Make ``dst`` the image ``src`` at ``size`` (W', H') px: a link or copy when ``src`` has that
    size (:func:`link_or_copy`'s action), else the JPEG of :func:`shrunk_jpeg` (``"written"`` or
    ``"unchanged"``)."""
    if _image_size(src) == size:
        return link_or_copy(src, dst)
    return write_if_changed(dst, shrunk_jpeg(src, size))


def _write_split(root: Path, split: str, entries: Sequence[Entry], lut: np.ndarray, present: np.ndarray,
                 resized: int, progress: bool) -> list[FileSummary]:
    """Write the images (shrunk or linked) and the label TIFFs of one split, of which ``resized``
    images are shrunk; their two summaries."""
    images: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    for entry in tqdm(entries, desc=f"ade20k-full {split} write", unit="image", disable=not progress):
        mask = _checked_class_mask(entry, len(lut) - 1)
        size = maskformer_size(mask.shape[1], mask.shape[0])
        images[_write_image(entry.image, root / IMAGES_OUT / split / f"{entry.id}.jpg", size)] += 1
        label = np.take(lut, resize_nearest(mask, size))
        labels[write_if_changed(root / LABELS_OUT / split / f"{entry.id}.tif", tiff_bytes(label))] += 1
    stale_images = remove_stale(root / IMAGES_OUT / split, {f"{e.id}.jpg" for e in entries})
    stale_labels = remove_stale(root / LABELS_OUT / split, {f"{e.id}.tif" for e in entries})
    image_summary = {"images": len(entries), "resized": resized,
                     **{k: images[k] for k in ("linked", "copied", "written", "unchanged")},
                     "stale_removed": stale_images}
    return [FileSummary(f"{IMAGES_OUT}/{split}", "wrote", image_summary),
            FileSummary(f"{LABELS_OUT}/{split}", "wrote", {"images": len(entries), **class_counts(lut[present], IGNORE),
                                                     **write_counts(labels, stale_labels)})]


def _json_bytes(obj: Any) -> bytes:
    """Indented JSON with a final newline: the bytes :func:`ovbench.prepare.jsonio.write_json` writes."""
    return (json.dumps(obj, indent=2, separators=(",", ": "), allow_nan=False) + "\n").encode()


def _notes(counts: Mapping[str, int], resized: Mapping[str, int]) -> tuple[str, ...]:
    notes = [f"{split}: {n} images, the release has {OFFICIAL[split]}; results are not comparable with the official "
             f"{split} set" for split, n in counts.items() if n != OFFICIAL[split]]
    if "training" not in counts:
        notes.append(f"{IMAGES}/training/ not found: only validation was prepared (all the protocol reads)")
    notes += [f"annotations_detectron2: class id = position of the object index in ADE-847's table (MaskFormer "
              f"trainId), {IGNORE} = unlabelled or one of the objects outside the {NUM_CLASSES}",
              f"{CLASS_TABLE_OUT}: names from index_ade20k.pkl objectnames (first comma item = name, the others = "
              "synonyms); partitions are set when protocol ade-847 loads it",
              "images with a shorter side over 512 px shrunk to 512, as MaskFormer's prepare_ade20k_full_sem_seg.py "
              f"(behind published ADE-847 numbers) does: {_resized_counts(counts, resized)}; labels nearest-neighbour "
              "exactly as its cv2.resize, images bilinear at cv2's sample positions (within 1 of cv2, not "
              f"byte-identical) saved as JPEG quality {JPEG_QUALITY}; the other images are links to the release's "
              "files (the script re-saves those as JPEG too)"]
    return tuple(notes)


def _resized_counts(counts: Mapping[str, int], resized: Mapping[str, int]) -> str:
    """``"<split> <shrunk> of <images>, ..."``: the images shrunk per split."""
    return ", ".join(f"{split} {resized[split]} of {n}" for split, n in counts.items())


PREPARER = Preparer(
    name="ade20k-full",
    help="ADE20K full release (ADE20K_2021_17_01) -> ade-847 class table, images and uint16 label TIFFs",
    inputs=(InputFile(INDEX, "ADE20K full index (pickled dict: filename, folder, objectnames, ...)", SOURCE),
            InputFile(f"{IMAGES}/validation/", "ADE20K full validation images (<scene>/<name>.jpg, <name>_seg.png)",
                      SOURCE)),
    outputs=(CLASS_TABLE_OUT, f"{IMAGES_OUT}/validation/", f"{LABELS_OUT}/validation/"),
    run=run,
    protocols=(PROTOCOL,))

__all__ = ["PREPARER", "class_table", "load_object_ids", "maskformer_size", "nearest_indices", "read_index",
           "resize_nearest", "shrink_image", "shrunk_jpeg", "split_of"]
