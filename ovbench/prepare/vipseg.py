"""``ovbench data prepare vipseg``: VIPSeg's panoptic masks -> protocols vipseg-ov and vipseg-ov-instance.

Inputs, below ``--root``: the official ``VIPSeg/VIPSeg_720P`` folder as VIPSeg's
``change2_720p.py`` writes it (VIPSeg-Dataset/VIPSeg-Dataset, README figure 2org.png):

- ``VIPSeg/VIPSeg_720P/train.txt`` and ``val.txt``: one video name per line (2806 and 343 videos
  in the official lists; the download keeps them in ``VIPSeg/``: copy them next to the folders);
- ``VIPSeg/VIPSeg_720P/images/<video>/<frame>.jpg`` (frames 720 px high, 8-digit names);
- ``VIPSeg/VIPSeg_720P/panomasks/<video>/<frame>.png``: single-channel integer PNGs, 0 = void,
  a stuff pixel = category id + 1 (1..124), a thing pixel = (category id + 1) * 100 + instance id;
- optionally ``VIPSeg/VIPSeg_720P/panoVIPSeg_categories.json`` (in the VIPSeg GitHub repository):
  when present it is checked against the protocol's class table.

Outputs, below ``--root/VIPSeg/ovbench/``:

- ``semantic/val/<video>/<frame>.png`` (what vipseg-ov reads): uint8, pixel = VIPSeg category id
  (0..123), 255 = void. Any value >= 125 whose category is a stuff class (the value 200 of VIPSeg
  issue #1, which the maintainers say should be 0) becomes 255 and is counted.
- ``semantic/train_base/<video>/<frame>.png``: the same for train with the 12 novel classes also
  255 (GKC's "base_ignore" training set: novel segments removed, every video kept; GKC's json
  additionally drops frames left without a base segment, here they stay, all 255).
- ``instances_val.json`` (what vipseg-ov-instance reads) and ``instances_train_base.json``:
  YouTube-VIS-format tracks of the thing instances, one per (video, panomask value), with a
  compressed RLE (ASCII counts), area and box per frame, or null where the instance is absent;
  train keeps only the 53 base thing classes. Every video of the split is listed.

All listed videos are checked (folders, every frame with its mask) before anything is written;
one video is held at a time; PNGs and JSON are written atomically (a file whose bytes would not
change is left alone) and stale PNGs below the two ``semantic`` folders are removed, so the same
inputs always give the same files.
"""
from __future__ import annotations

import hashlib
import io
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ovbench.data.label_io import LabelDecodeError, decode_label_map
from ovbench.errors import OvbenchError, ValidationError
from ovbench.prepare.base import FileSummary, InputFile, Preparer, PrepareReport
from ovbench.protocols import ClassInfo, get_protocol
from ovbench.records.store import atomic_write

SEMSEG_PROTOCOL = "vipseg-ov"
INSTANCE_PROTOCOL = "vipseg-ov-instance"
ROOT = "VIPSeg/VIPSeg_720P"
IMAGES = f"{ROOT}/images"
PANOMASKS = f"{ROOT}/panomasks"
SPLIT_LISTS = {"val": f"{ROOT}/val.txt", "train": f"{ROOT}/train.txt"}
CATEGORIES_IN = f"{ROOT}/panoVIPSeg_categories.json"
OUT = "VIPSeg/ovbench"
SEMANTIC_OUT = {"val": f"{OUT}/semantic/val", "train": f"{OUT}/semantic/train_base"}
INSTANCES_OUT = {"val": f"{OUT}/instances_val.json", "train": f"{OUT}/instances_train_base.json"}
#: Videos in the official split lists (VIPSeg-Dataset/VIPSeg-Dataset train.txt / val.txt).
OFFICIAL_VIDEOS = {"train": 2806, "val": 343}
IGNORE = 255
DIVISOR = 100  # thing pixel = (category id + 1) * DIVISOR + instance id
NUM_CATEGORIES = 124
MAX_VALUE = (NUM_CATEGORIES + 1) * DIVISOR - 1  # 12499: category 123, instance 99
SOURCE = ("the VIPSeg download linked from https://github.com/VIPSeg-Dataset/VIPSeg-Dataset, converted with its "
          "change2_720p.py (run inside VIPSeg/)")
LIST_SOURCE = ("the VIPSeg download (VIPSeg/{name}) or https://github.com/VIPSeg-Dataset/VIPSeg-Dataset "
               "({name}); copy it into VIPSeg/VIPSeg_720P/")
FIX = f"use the official files: {SOURCE}"


@dataclass(frozen=True)
class Tables:
    """Lookup tables from panomask value to class id (``IGNORE`` where none) for one split."""

    semantic: np.ndarray       # value -> class id written to the label map
    track_category: np.ndarray  # value -> category id of a kept thing track, -1 otherwise
    anomalous: np.ndarray      # value >= 125 whose category is a stuff class (-> void)
    bare_thing: np.ndarray     # value 1..124 of a thing class (a thing pixel without instance id)


def build_tables(classes: Sequence[ClassInfo], thing_ids: set[int], keep: set[int]) -> Tables:
    """Tables for a split whose label maps keep the class ids in ``keep`` (others -> 255)."""
    n = MAX_VALUE + 1
    semantic = np.full(n, IGNORE, np.uint8)
    track = np.full(n, -1, np.int32)
    anomalous = np.zeros(n, bool)
    bare_thing = np.zeros(n, bool)
    for c in classes:
        if c.id in keep:
            semantic[c.id + 1] = c.id
        bare_thing[c.id + 1] = c.id in thing_ids
        # values of category c as a thing; category 0's block starts after the stuff values 1..124
        block = slice(max((c.id + 1) * DIVISOR, NUM_CATEGORIES + 1), (c.id + 2) * DIVISOR)
        if c.id in thing_ids:
            if c.id in keep:
                semantic[block] = c.id
                track[block] = c.id
        else:
            anomalous[block] = True
    return Tables(semantic, track, anomalous, bare_thing)


def run(root: Path, progress: bool = True) -> PrepareReport:
    """Check the layout of both splits, then write the label maps and track files (module docstring)."""
    semseg = get_protocol(SEMSEG_PROTOCOL).require_classes()
    things = get_protocol(INSTANCE_PROTOCOL).require_classes()
    thing_ids = {c.id for c in things}
    if [c.id for c in semseg] != list(range(NUM_CATEGORIES)) or not thing_ids <= {c.id for c in semseg}:
        raise OvbenchError(f"protocols {SEMSEG_PROTOCOL} / {INSTANCE_PROTOCOL}: class tables do not match VIPSeg's "
                           f"{NUM_CATEGORIES} categories; fix the protocol definitions")
    files: list[FileSummary] = []
    if (root / CATEGORIES_IN).is_file():
        files.append(_check_categories(root / CATEGORIES_IN, semseg, thing_ids))
    videos = _checked_layout(root)
    notes = [f"{split}: {split}.txt lists {len(v)} videos, the official list {OFFICIAL_VIDEOS[split]}; results "
             f"are not comparable with the official {split} set" for split, v in videos.items()
             if len(v) != OFFICIAL_VIDEOS[split]]
    val_sha = get_protocol(SEMSEG_PROTOCOL).definition["video_list"]["sha256"]
    if len(videos["val"]) == OFFICIAL_VIDEOS["val"] and video_list_sha256(videos["val"]) != val_sha:
        notes.append("val: val.txt has the official number of videos but other names; results are not comparable")
    base = {c.id for c in semseg if c.partition == "base"}
    partition = {c.id: c.partition for c in semseg}
    for split, keep in (("val", {c.id for c in semseg}), ("train", base)):
        tables = build_tables(semseg, thing_ids, keep)
        categories = [{"id": c.id, "name": c.name, "partition": c.partition} for c in things if c.id in keep]
        sem_counts, ins_counts = _prepare_split(root, split, videos[split], tables, categories, partition, progress)
        files += [FileSummary(SEMANTIC_OUT[split], "wrote", sem_counts),
                  FileSummary(INSTANCES_OUT[split], "wrote", ins_counts)]
        if sem_counts["void_defect_frames"]:
            notes.append(f"{split}: {sem_counts['void_defect_pixels']} pixels in {sem_counts['void_defect_frames']} "
                         "frames hold a thing-style value of a stuff class (e.g. 200, VIPSeg issue #1) and were "
                         "made void (255)")
        if sem_counts["thing_pixels_without_instance"]:
            notes.append(f"{split}: {sem_counts['thing_pixels_without_instance']} pixels carry a thing class "
                         "without an instance id: labelled in the label maps, in no track")
    notes.append("train_base is GKC's base_ignore training set (novel pixels 255, every video and frame kept); "
                 f"instances_train_base.json holds the tracks of the {len(thing_ids & base)} base thing classes")
    return PrepareReport(name=PREPARER.name, root=root, files=tuple(files), notes=tuple(notes))


def video_list_sha256(names: Sequence[str]) -> str:
    """SHA-256 of the sorted video names joined by newlines with a final newline (as the protocol records)."""
    return hashlib.sha256(("\n".join(sorted(names)) + "\n").encode()).hexdigest()


def _check_categories(path: Path, classes: Sequence[ClassInfo], thing_ids: set[int]) -> FileSummary:
    """Check VIPSeg's own category file (when present) against the protocol: ids, names, isthing."""
    fix = "use panoVIPSeg_categories.json from https://github.com/VIPSeg-Dataset/VIPSeg-Dataset"
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise OvbenchError(f"{path}: cannot read it as JSON ({e}); {fix}") from e
    expected = [{"id": c.id, "name": c.dataset_name, "isthing": int(c.id in thing_ids)} for c in classes]
    got = [{k: c.get(k) for k in ("id", "name", "isthing")} if isinstance(c, dict) else c
           for c in (raw if isinstance(raw, list) else [raw])]
    if got != expected:
        i = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        raise OvbenchError(f"{path}: not VIPSeg's category list ({len(got)} entries; first difference at entry {i}: "
                           f"{got[i] if i < len(got) else '-'}, expected {expected[i] if i < len(expected) else '-'})"
                           f"; {fix}")
    return FileSummary(CATEGORIES_IN, "checked", {"categories": len(expected), "things": len(thing_ids)})


def _read_list(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise OvbenchError(f"{path}: cannot read it ({e}); {FIX}") from e


def _checked_layout(root: Path) -> dict[str, dict[str, list[str]]]:
    """``{split: {video: [frame, ...]}}`` (sorted), or one :class:`ValidationError` with every problem."""
    problems: list[str] = []
    lists = {split: _read_list(root / path) for split, path in SPLIT_LISTS.items()}
    for split, names in lists.items():
        dup = sorted(n for n, k in Counter(names).items() if k > 1)
        if dup:
            problems.append(f"{root / SPLIT_LISTS[split]}: {len(dup)} video(s) listed twice (first: {dup[0]})")
        if not names:
            problems.append(f"{root / SPLIT_LISTS[split]}: lists no video")
    both = sorted(set(lists["train"]) & set(lists["val"]))
    if both:
        problems.append(f"{len(both)} video(s) are in both train.txt and val.txt (first: {both[0]})")
    out: dict[str, dict[str, list[str]]] = {}
    for split, names in lists.items():
        out[split] = {}
        for video in sorted(set(names)):
            img_dir, mask_dir = root / IMAGES / video, root / PANOMASKS / video
            if not img_dir.is_dir() or not mask_dir.is_dir():
                missing = [str(d) for d in (img_dir, mask_dir) if not d.is_dir()]
                problems.append(f"{split} video {video}: {' and '.join(missing)} not found")
                continue
            frames = sorted(p.stem for p in img_dir.glob("*.jpg"))
            masks = {p.stem for p in mask_dir.glob("*.png")}
            if not frames:
                problems.append(f"{split} video {video}: no .jpg frame in {img_dir}")
                continue
            lacking = [f for f in frames if f not in masks]
            extra = sorted(masks - set(frames))
            if lacking:
                problems.append(f"{split} video {video}: {len(lacking)} frame(s) have no panomask "
                                f"(first: {mask_dir / (lacking[0] + '.png')})")
            if extra:
                problems.append(f"{split} video {video}: {len(extra)} panomask(s) have no frame "
                                f"(first: {img_dir / (extra[0] + '.jpg')})")
            out[split][video] = frames
    if problems:
        raise ValidationError(f"dataset vipseg: the VIPSeg_720P layout below {root} is incomplete", problems,
                              fix=f"{FIX}; the split lists must name the folders of images/ and panomasks/")
    return out


def _read_panomask(path: Path) -> np.ndarray:
    try:
        arr, _ = decode_label_map(path.read_bytes())
    except (OSError, LabelDecodeError) as e:
        raise OvbenchError(f"{path}: not a VIPSeg panomask ({e}); {FIX}") from e
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > MAX_VALUE):
        bad = int(arr.max()) if int(arr.max()) > MAX_VALUE else int(arr.min())
        raise OvbenchError(f"{path}: value {bad} is no VIPSeg panoptic value (0..{MAX_VALUE}: void, category id + 1, "
                           f"or (category id + 1) * {DIVISOR} + instance); {FIX}")
    return arr.astype(np.intp, copy=False)  # the index type: bincount and take need no further cast


def _frame_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # PIL raises many types for truncated or foreign files
        raise OvbenchError(f"{path}: cannot read the frame ({type(e).__name__}: {e}); {FIX}") from e


def _rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed RLE (ASCII counts) of a boolean mask; Fortran-ordered input avoids a copy."""
    rle = mask_utils.encode(np.asfortranarray(mask.view(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _prepare_split(root: Path, split: str, videos: Mapping[str, list[str]], tables: Tables,
                   categories: list[dict[str, Any]], partition: Mapping[int, str],
                   progress: bool) -> tuple[dict[str, int], dict[str, int]]:
    sem_dir = root / SEMANTIC_OUT[split]
    written: set[Path] = set()
    classes_present = np.zeros(NUM_CATEGORIES, bool)
    sem = {"videos": len(videos), "frames": 0, "frames_min": 0, "frames_max": 0, "classes_present": 0,
           "min_class": -1, "max_class": -1, "void_defect_frames": 0, "void_defect_pixels": 0,
           "thing_pixels_without_instance": 0, "stale_removed": 0}
    ins = {"videos": len(videos), "videos_with_tracks": 0, "tracks": 0, "tracks_base": 0, "tracks_novel": 0,
           "masks": 0}
    lengths = [len(f) for f in videos.values()]
    sem["frames"], sem["frames_min"], sem["frames_max"] = sum(lengths), min(lengths), max(lengths)
    video_entries: list[dict[str, Any]] = []
    with _AnnotationStream(root / INSTANCES_OUT[split]) as stream, \
            tqdm(total=sem["frames"], desc=f"vipseg {split}", unit="frame", disable=not progress) as bar:
        for video_id, (video, frames) in enumerate(videos.items(), start=1):
            size: tuple[int, int] | None = None
            tracks: dict[int, list[dict[str, Any] | None]] = {}
            for t, frame in enumerate(frames):
                mask_path = root / PANOMASKS / video / f"{frame}.png"
                pan = _read_panomask(mask_path)
                h, w = pan.shape
                image_size = _frame_size(root / IMAGES / video / f"{frame}.jpg")
                if image_size != (w, h):
                    raise OvbenchError(f"{mask_path}: {w}x{h}, its frame is {image_size[0]}x{image_size[1]}; "
                                       f"both must come from the same change2_720p.py run; {FIX}")
                if size is None:
                    size = (w, h)
                elif size != (w, h):
                    raise OvbenchError(f"{mask_path}: {w}x{h}, earlier frames of {video} are {size[0]}x{size[1]}; "
                                       f"{FIX}")
                counts = np.bincount(pan.ravel(), minlength=MAX_VALUE + 1)
                present = np.flatnonzero(counts)
                defect = present[tables.anomalous[present]]
                if defect.size:
                    sem["void_defect_frames"] += 1
                    sem["void_defect_pixels"] += int(counts[defect].sum())
                sem["thing_pixels_without_instance"] += int(counts[present[tables.bare_thing[present]]].sum())
                label = np.take(tables.semantic, pan)
                labelled = tables.semantic[present]
                classes_present[labelled[labelled != IGNORE]] = True
                out_path = sem_dir / video / f"{frame}.png"
                _write_bytes_if_changed(out_path, _png_bytes(label))
                written.add(out_path)
                thing_values = present[tables.track_category[present] >= 0]
                pan_f = np.asfortranarray(pan) if thing_values.size else pan
                for value in thing_values:
                    entries = tracks.setdefault(int(value), [None] * len(frames))
                    entries[t] = _rle(pan_f == value)
                bar.update()
            assert size is not None
            video_entries.append({"id": video_id, "name": video, "width": size[0], "height": size[1],
                                  "length": len(frames), "file_names": [f"{video}/{f}.jpg" for f in frames]})
            for value in sorted(tracks):
                category = int(tables.track_category[value])
                segs = tracks[value]
                stream.add({"id": ins["tracks"] + 1, "video_id": video_id, "category_id": category,
                            "segmentations": segs,
                            "areas": [None if s is None else int(mask_utils.area(s)) for s in segs],
                            "bboxes": [None if s is None else [float(v) for v in mask_utils.toBbox(s)]
                                       for s in segs],
                            "iscrowd": 0, "length": 1})
                ins["tracks"] += 1
                ins[f"tracks_{partition[category]}"] += 1
                ins["masks"] += sum(s is not None for s in segs)
            ins["videos_with_tracks"] += bool(tracks)
        stream.finish(video_entries, categories)
    sem["stale_removed"] = _remove_stale(sem_dir, written)
    present_ids = np.flatnonzero(classes_present)
    sem["classes_present"] = int(present_ids.size)
    if present_ids.size:
        sem["min_class"], sem["max_class"] = int(present_ids[0]), int(present_ids[-1])
    return sem, ins


def _png_bytes(label: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8), mode="L").save(
        buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def _write_bytes_if_changed(path: Path, data: bytes) -> None:
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    atomic_write(path, lambda f: f.write(data))


def _remove_stale(folder: Path, keep: set[Path]) -> int:
    """Delete files below ``folder`` (ours) not in ``keep``, then empty folders; returns the count."""
    removed = 0
    for p in sorted(folder.rglob("*"), reverse=True):
        if p.is_file() and p not in keep:
            p.unlink()
            removed += 1
        elif p.is_dir() and not any(p.iterdir()):
            p.rmdir()
    return removed


class _AnnotationStream:
    """The YouTube-VIS JSON written with bounded memory: annotations go to a temporary file as
    they come, and :meth:`finish` assembles ``{"videos", "annotations", "categories"}`` (compact,
    the bytes of ``jsonio.write_json``) into a second temporary file renamed into place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._parts: Any = None
        self._first = True

    def __enter__(self) -> "_AnnotationStream":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._parts = tempfile.TemporaryFile(mode="w+", dir=self.path.parent, prefix=f".{self.path.name}.")
        return self

    def add(self, annotation: dict[str, Any]) -> None:
        if not self._first:
            self._parts.write(",")
        self._parts.write(_dumps(annotation))
        self._first = False

    def finish(self, videos: list[dict[str, Any]], categories: list[dict[str, Any]]) -> None:
        def write(f: Any) -> None:
            f.write(('{"videos":' + _dumps(videos) + ',"annotations":[').encode())
            self._parts.seek(0)
            for chunk in iter(lambda: self._parts.read(1 << 20), ""):
                f.write(chunk.encode())
            f.write(('],"categories":' + _dumps(categories) + "}\n").encode())
        atomic_write(self.path, write)

    def __exit__(self, *exc: object) -> None:
        self._parts.close()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _iter_inputs() -> Iterator[InputFile]:
    for split in ("train", "val"):
        yield InputFile(SPLIT_LISTS[split], f"VIPSeg {split} video list",
                        LIST_SOURCE.format(name=f"{split}.txt"))
    yield InputFile(IMAGES + "/", "VIPSeg_720P frames (<video>/<frame>.jpg)", SOURCE)
    yield InputFile(PANOMASKS + "/", "VIPSeg_720P panoptic masks (<video>/<frame>.png)", SOURCE)


PREPARER = Preparer(
    name="vipseg",
    help="VIPSeg_720P panoptic masks -> vipseg-ov label maps (val, base-only train) and vipseg-ov-instance tracks",
    inputs=tuple(_iter_inputs()),
    outputs=(SEMANTIC_OUT["val"] + "/", SEMANTIC_OUT["train"] + "/", INSTANCES_OUT["val"], INSTANCES_OUT["train"]),
    run=run,
    protocols=("vipseg-ov", "vipseg-ov-instance"))

__all__ = ["PREPARER", "build_tables", "video_list_sha256"]
