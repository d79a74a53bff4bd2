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
- ``images_detectron2/<split>/<id>.jpg``: a hard link to the image (a copy where the filesystem
  refuses), ``<id>`` the image file's stem;
- ``annotations_detectron2/<split>/<id>.tif``: uint16 TIFF (mode ``I;16``), pixel = class id
  0..846, 65535 = unlabelled or an object outside the 847.

Images and labels keep the release's resolution: MaskFormer's script also shrinks every image whose
shorter side exceeds 512 px to 512 (labels nearest-neighbour), which this preparer does not do.

The index, the class table and every listed image with its ``_seg.png`` (present, decodable, the
image's size, object indices within ``objectnames``) are checked before anything is written; each
output is written atomically, a file whose bytes would not change is left alone, and stale files
below the output folders are removed. Image counts other than the release's are reported as notes.
"""
from __future__ import annotations

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
from ovbench.prepare.files import (check_size, class_counts, image_counts, link_or_copy, remove_stale,
                                   tiff_bytes, write_counts, write_if_changed)

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
    for split in splits:
        for entry in tqdm(entries[split], desc=f"ade20k-full {split} check", unit="image", disable=not progress):
            present[split][np.flatnonzero(np.bincount(_checked_class_mask(entry, len(objectnames)).ravel()))] = True

    table_action = write_if_changed(root / CLASS_TABLE_OUT, _json_bytes(table))
    files = [FileSummary(INDEX, "checked", {"images": len(filenames), "objectnames": len(objectnames)}),
             FileSummary(CLASS_TABLE_OUT, "wrote", {"classes": len(table),
                                               "distinct_names": len({row["name"] for row in table}),
                                               "unchanged": int(table_action == "unchanged")})]
    for split in splits:
        files += _write_split(root, split, entries[split], lut, present[split], progress)
    return PrepareReport(name=PREPARER.name, root=root, files=tuple(files),
                         notes=_notes({s: len(entries[s]) for s in splits}))


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


def _write_split(root: Path, split: str, entries: Sequence[Entry], lut: np.ndarray, present: np.ndarray,
                 progress: bool) -> list[FileSummary]:
    """Link the images and write the label TIFFs of one split; their two summaries."""
    images: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    for entry in tqdm(entries, desc=f"ade20k-full {split} write", unit="image", disable=not progress):
        images[link_or_copy(entry.image, root / IMAGES_OUT / split / f"{entry.id}.jpg")] += 1
        label = np.take(lut, _checked_class_mask(entry, len(lut) - 1))
        labels[write_if_changed(root / LABELS_OUT / split / f"{entry.id}.tif", tiff_bytes(label))] += 1
    stale_images = remove_stale(root / IMAGES_OUT / split, {f"{e.id}.jpg" for e in entries})
    stale_labels = remove_stale(root / LABELS_OUT / split, {f"{e.id}.tif" for e in entries})
    return [FileSummary(f"{IMAGES_OUT}/{split}", "wrote", image_counts(len(entries), images, stale_images)),
            FileSummary(f"{LABELS_OUT}/{split}", "wrote", {"images": len(entries), **class_counts(lut[present], IGNORE),
                                                     **write_counts(labels, stale_labels)})]


def _json_bytes(obj: Any) -> bytes:
    """Indented JSON with a final newline: the bytes :func:`ovbench.prepare.jsonio.write_json` writes."""
    return (json.dumps(obj, indent=2, separators=(",", ": "), allow_nan=False) + "\n").encode()


def _notes(counts: Mapping[str, int]) -> tuple[str, ...]:
    notes = [f"{split}: {n} images, the release has {OFFICIAL[split]}; results are not comparable with the official "
             f"{split} set" for split, n in counts.items() if n != OFFICIAL[split]]
    if "training" not in counts:
        notes.append(f"{IMAGES}/training/ not found: only validation was prepared (all the protocol reads)")
    notes += [f"annotations_detectron2: class id = position of the object index in ADE-847's table (MaskFormer "
              f"trainId), {IGNORE} = unlabelled or one of the objects outside the {NUM_CLASSES}",
              f"{CLASS_TABLE_OUT}: names from index_ade20k.pkl objectnames (first comma item = name, the others = "
              "synonyms); partitions are set when protocol ade-847 loads it",
              "images and labels keep the release's resolution; MaskFormer's prepare_ade20k_full_sem_seg.py (behind "
              "published ADE-847 numbers) shrinks images with a shorter side over 512 px to 512 first"]
    return tuple(notes)


PREPARER = Preparer(
    name="ade20k-full",
    help="ADE20K full release (ADE20K_2021_17_01) -> ade-847 class table, images and uint16 label TIFFs",
    inputs=(InputFile(INDEX, "ADE20K full index (pickled dict: filename, folder, objectnames, ...)", SOURCE),
            InputFile(f"{IMAGES}/validation/", "ADE20K full validation images (<scene>/<name>.jpg, <name>_seg.png)",
                      SOURCE)),
    outputs=(CLASS_TABLE_OUT, f"{IMAGES_OUT}/validation/", f"{LABELS_OUT}/validation/"),
    run=run,
    protocols=(PROTOCOL,))

__all__ = ["PREPARER", "class_table", "load_object_ids", "read_index", "split_of"]
