"""``ovbench data prepare coco-panoptic``: COCO 2017 panoptic -> protocol coco-panoptic-133 and GKC's split files.

Inputs, below ``--root`` (the official COCO 2017 files, unzipped):

- ``coco/annotations/panoptic_{train,val}2017.json`` (in ``panoptic_annotations_trainval2017.zip``);
- ``coco/annotations/panoptic_{train,val}2017/<stem>.png``: the panoptic PNGs, which that zip holds as
  ``annotations/panoptic_{train,val}2017.zip``: unzip each inside ``coco/annotations/``. A pixel's
  segment id is R + 256 G + 256^2 B (0 = unlabelled); ``segments_info`` gives each segment's category;
- ``coco/{train,val}2017/<stem>.jpg`` (``train2017.zip``, ``val2017.zip``): only checked to exist and
  to have the size the JSON gives.

Outputs, below ``--root/coco/``:

- ``panoptic_semseg_{train,val}2017/<stem>.png`` (what coco-panoptic-133 reads; ``<stem>`` is the
  image's file stem, e.g. ``000000000139``): uint8 (mode L) label maps of the image's size, the
  conversion of Mask2Former's ``prepare_coco_semantic_annos_from_panoptic_annos.py``: a segment's
  pixels hold its category's contiguous id (the position of its COCO panoptic id in the protocol's
  ``dataset_ids``, 0..132), crowd segments included; unlabelled pixels (id 0) 255. Train keeps all
  133 classes: the base-only semantic training set is the training config key ``data.classes: base``
  (novel pixels become 255 at load time, ``ovbench.data.training.vocabulary_lookup``), so no second
  folder of label maps is written.
- ``annotations/ovbench/``: GKC's 18-novel split (its ``prepare_coco_novel_json.py``; novel = the
  protocol's ``partition_rule.novel_dataset_ids``) as panoptic JSON whose other keys are kept as
  they are and whose ``categories`` are cut to the kept ones, in their original order:
  ``panoptic_train2017_base_ignore.json`` (novel segments removed from ``segments_info``, every image
  kept), ``panoptic_train2017_base_delete.json`` (the images holding a novel segment dropped with
  their annotations), ``panoptic_val2017_base.json`` and ``panoptic_val2017_novel.json``
  (``segments_info`` cut to the base / novel categories, every image kept). GKC's script also drops
  the images left without a kept segment; the report counts them (``images_without_segments``).

Both JSON files are checked before any PNG is read: the schema, the 133 categories against the
protocol (ids and names), one annotation per image sharing the image's file stem, distinct segment
ids of known categories, every PNG and image present. Converting then checks each PNG (an RGB PNG of
the size the JSON gives, with no segment id that ``segments_info`` lacks) and each image's size. Label
maps whose bytes change are staged in a hidden folder next to their output folder and moved into place
only once both splits have converted, so an invalid input leaves every output as it was; label maps
whose bytes would not change are left alone, stale ones are removed and the JSON files are written
atomically: the same inputs always give the same files. A large split is converted by a pool of
processes, one per CPU (at most ``MAX_WORKERS``).
"""
from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from ovbench.errors import OvbenchError, ValidationError
from ovbench.prepare.base import FileSummary, InputFile, Preparer, PrepareReport
from ovbench.prepare.instances import Doc
from ovbench.prepare.jsonio import read_json_object, write_json
from ovbench.prepare.files import class_counts, image_size, png_bytes, remove_stale, write_counts
from ovbench.protocols import get_protocol
from ovbench.records.store import atomic_write

PROTOCOL = "coco-panoptic-133"
SPLITS = ("val", "train")
ANNOTATIONS = "coco/annotations"
JSON_IN = {split: f"{ANNOTATIONS}/panoptic_{split}2017.json" for split in SPLITS}
PANOPTIC_IN = {split: f"{ANNOTATIONS}/panoptic_{split}2017" for split in SPLITS}
IMAGES = {split: f"coco/{split}2017" for split in SPLITS}
SEMANTIC_OUT = {split: f"coco/panoptic_semseg_{split}2017" for split in SPLITS}
SPLIT_OUT = f"{ANNOTATIONS}/ovbench"
BASE_IGNORE_OUT = f"{SPLIT_OUT}/panoptic_train2017_base_ignore.json"
BASE_DELETE_OUT = f"{SPLIT_OUT}/panoptic_train2017_base_delete.json"
VAL_BASE_OUT = f"{SPLIT_OUT}/panoptic_val2017_base.json"
VAL_NOVEL_OUT = f"{SPLIT_OUT}/panoptic_val2017_novel.json"
#: Images (= annotations) of the official panoptic JSON files.
OFFICIAL_IMAGES = {"train": 118287, "val": 5000}
IGNORE = 255
MAX_SEGMENT_ID = 256 ** 3 - 1  # white, (255, 255, 255)
#: Splits with fewer images are converted in this process; larger ones by a pool of processes.
PARALLEL_MIN_IMAGES = 256
MAX_WORKERS = 16
CHUNK = 32  # images handed to a worker at a time
WHAT = "a COCO panoptic annotation file"
DOWNLOAD = "https://cocodataset.org/#download"
ANNOTATION_SOURCE = (f"panoptic_annotations_trainval2017.zip from {DOWNLOAD} (http://images.cocodataset.org/"
                     "annotations/panoptic_annotations_trainval2017.zip), unzipped into <root>/coco/")
FIX = f"use the official files: {ANNOTATION_SOURCE}"


def png_source(split: str) -> str:
    """Where the panoptic PNGs of ``split`` come from."""
    return (f"coco/annotations/panoptic_{split}2017.zip (inside panoptic_annotations_trainval2017.zip from "
            f"{DOWNLOAD}): unzip it inside <root>/coco/annotations/")


def image_source(split: str) -> str:
    """Where the images of ``split`` come from."""
    return (f"{split}2017.zip from {DOWNLOAD} (http://images.cocodataset.org/zips/{split}2017.zip), "
            "unzipped into <root>/coco/")


@dataclass(frozen=True)
class _Job:
    """One image to convert: its files, its size (width, height) from the JSON, and its segments."""

    split: str
    panoptic: Path
    image: Path
    output: Path
    staged: Path
    annotations: Path
    image_id: int
    size: tuple[int, int]
    segment_ids: tuple[int, ...]
    classes: tuple[int, ...]  # contiguous class id of each segment


@dataclass(frozen=True)
class _Converted:
    """What converting one image gave: whether its label map was staged (its bytes changed), the class
    ids it holds and how many of its listed segments have no pixel."""

    staged: bool
    classes: tuple[int, ...]
    empty_segments: int


@dataclass(frozen=True)
class _SplitResult:
    staged: tuple[str, ...]  # file names of the staged label maps
    names: frozenset[str]    # file names of every label map of the split
    present: np.ndarray      # class ids present in the label maps
    empty_segments: int


def run(root: Path, progress: bool = True) -> PrepareReport:
    """Check both JSON files and their files, convert both splits, then write every output (module docstring)."""
    protocol = get_protocol(PROTOCOL)
    dataset_ids = protocol.definition["dataset_ids"]
    names = {dataset_ids[c.id]: c.dataset_name for c in protocol.require_classes()}
    contiguous = {d: k for k, d in enumerate(dataset_ids)}
    novel = frozenset(protocol.partition_rule["novel_dataset_ids"])
    base = frozenset(dataset_ids) - novel
    docs = {split: _checked_doc(root, split, names) for split in SPLITS}
    for split in SPLITS:
        _require_files(root, split, docs[split])
    out_dirs = {split: root / SEMANTIC_OUT[split] for split in SPLITS}
    with ExitStack() as stack:  # the staging folders go, whatever happens
        stages = {split: Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix=f".{out_dirs[split].name}.", dir=out_dirs[split].parent))) for split in SPLITS}
        results = {split: _convert_split(_jobs(root, split, docs[split], contiguous, stages[split]), split, progress)
                   for split in SPLITS}
        stale = {split: _commit(stages[split], out_dirs[split], results[split]) for split in SPLITS}
    files = [FileSummary(JSON_IN[split], "checked", _segment_counts(docs[split], novel)) for split in SPLITS]
    for split in SPLITS:
        r = results[split]
        files.append(FileSummary(SEMANTIC_OUT[split], "wrote", {
            "images": len(r.names), **class_counts(r.present, IGNORE), "segments_without_pixels": r.empty_segments,
            **write_counts({"written": len(r.staged), "unchanged": len(r.names) - len(r.staged)}, stale[split])}))
    files += _write_split_files(root, docs, base, novel)
    return PrepareReport(name=PREPARER.name, root=root, files=tuple(files),
                         notes=_notes(docs, results, files, len(base), len(novel)))


# ------------------------------------------------------------------------------------- input checks


def _checked_doc(root: Path, split: str, names: Mapping[int, str]) -> Doc:
    """The panoptic JSON of ``split``, checked (module docstring); ``names`` maps COCO panoptic id -> name."""
    path = root / JSON_IN[split]
    doc = read_json_object(path, ("images", "annotations", "categories"), WHAT, FIX)
    _check_categories(doc["categories"], names, path)
    images = _checked_images(doc["images"], path)
    _check_annotations(doc["annotations"], images, names.keys(), path)
    return doc


def _check_categories(raw: Sequence[Any], names: Mapping[int, str], path: Path) -> None:
    """Raise unless ``raw`` lists exactly the protocol's categories (ids once each, COCO's names)."""
    bad = next((i for i, c in enumerate(raw)
                if not (isinstance(c, dict) and _is_int(c.get("id")) and isinstance(c.get("name"), str))), None)
    if bad is not None:
        raise OvbenchError(f"{path}: not {WHAT}: category entry {bad} lacks an integer id or a name; {FIX}")
    ids = Counter(c["id"] for c in raw)
    missing, extra = sorted(names.keys() - ids.keys()), sorted(ids.keys() - names.keys())
    twice = sorted(i for i, n in ids.items() if n > 1)
    if missing or extra or twice:
        found = "; ".join(f"{what} {_ids(v)}" for what, v in (("missing ids", missing), ("extra ids", extra),
                                                             ("ids listed twice", twice)) if v)
        raise OvbenchError(f"{path}: its categories are not the {len(names)} COCO panoptic categories of protocol "
                           f"{PROTOCOL} ({found}); {FIX}")
    renamed = next((c for c in raw if c["name"] != names[c["id"]]), None)
    if renamed is not None:
        raise OvbenchError(f"{path}: category {renamed['id']} is named {renamed['name']!r}, COCO panoptic's "
                           f"{renamed['id']} is {names[renamed['id']]!r}; {FIX}")


def _checked_images(raw: Sequence[Any], path: Path) -> dict[int, dict[str, Any]]:
    """``{image id: image}``; every image has an integer id, a plain file name and a positive size, all distinct."""
    images: dict[int, dict[str, Any]] = {}
    stems: set[str] = set()
    for i, im in enumerate(raw):
        if not (isinstance(im, dict) and _is_int(im.get("id")) and _is_plain_name(im.get("file_name"))
                and all(_is_int(im.get(k)) and im[k] > 0 for k in ("width", "height"))):
            raise OvbenchError(f"{path}: not {WHAT}: image entry {i} lacks an integer id, a file name or a positive "
                               f"width and height; {FIX}")
        stem = Path(im["file_name"]).stem
        if im["id"] in images or stem in stems:
            raise OvbenchError(f"{path}: image {im['id']} ({im['file_name']}): its id or file name is listed twice; "
                               f"{FIX}")
        images[im["id"]] = im
        stems.add(stem)
    return images


def _check_annotations(raw: Sequence[Any], images: Mapping[int, dict[str, Any]], category_ids: Collection[int],
                       path: Path) -> None:
    """Raise unless every image has one annotation of its file stem whose segments are well formed and known."""
    annotated: set[int] = set()
    for i, ann in enumerate(raw):
        if not (isinstance(ann, dict) and _is_plain_name(ann.get("file_name")) and _is_int(ann.get("image_id"))
                and isinstance(ann.get("segments_info"), list)):
            raise OvbenchError(f"{path}: not {WHAT}: annotation {i} lacks a file_name, an integer image_id or a "
                               f"segments_info list; {FIX}")
        where = f"{path}: annotation {ann['file_name']} (image {ann['image_id']})"
        image = images.get(ann["image_id"])
        if image is None:
            raise OvbenchError(f"{where}: its image_id is not in 'images'; {FIX}")
        if ann["image_id"] in annotated:
            raise OvbenchError(f"{where}: a second annotation of the image; {FIX}")
        annotated.add(ann["image_id"])
        if Path(ann["file_name"]).stem != Path(image["file_name"]).stem:
            raise OvbenchError(f"{where}: the PNG's name does not match the image {image['file_name']}; {FIX}")
        _check_segments(ann["segments_info"], category_ids, where)
    lacking = sorted(images.keys() - annotated)
    if lacking:
        raise OvbenchError(f"{path}: {len(lacking)} image(s) have no annotation (first: image {lacking[0]}); {FIX}")


def _check_segments(segments: Sequence[Any], category_ids: Collection[int], where: str) -> None:
    """Raise unless each segment has a distinct id 1..256^3-1 and the id of a known category."""
    seen: set[int] = set()
    for k, seg in enumerate(segments):
        if not (isinstance(seg, dict) and _is_int(seg.get("id")) and _is_int(seg.get("category_id"))):
            raise OvbenchError(f"{where}: segments_info entry {k} lacks an integer id or category_id; {FIX}")
        if not 0 < seg["id"] <= MAX_SEGMENT_ID or seg["id"] in seen:
            raise OvbenchError(f"{where}: segment id {seg['id']} is repeated or outside 1..{MAX_SEGMENT_ID} "
                               f"(R + 256 G + 256^2 B, 0 = unlabelled); {FIX}")
        if seg["category_id"] not in category_ids:
            raise OvbenchError(f"{where}: segment {seg['id']} has category_id {seg['category_id']}, which is not a "
                               f"COCO panoptic category (protocol {PROTOCOL}); {FIX}")
        seen.add(seg["id"])


def _require_files(root: Path, split: str, doc: Doc) -> None:
    """Raise one :class:`ValidationError` naming every panoptic PNG and image of ``doc`` that is not a file."""
    images = {im["id"]: im for im in doc["images"]}
    pngs = [root / PANOPTIC_IN[split] / a["file_name"] for a in doc["annotations"]]
    jpgs = [root / IMAGES[split] / images[a["image_id"]]["file_name"] for a in doc["annotations"]]
    missing_pngs = [p for p in pngs if not p.is_file()]
    missing_jpgs = [p for p in jpgs if not p.is_file()]
    if missing_pngs or missing_jpgs:
        fixes = ([f"get the PNGs from {png_source(split)}"] * bool(missing_pngs)
                 + [f"get the images from {image_source(split)}"] * bool(missing_jpgs))
        raise ValidationError(
            f"dataset coco-panoptic: {len(missing_pngs) + len(missing_jpgs)} file(s) that {root / JSON_IN[split]} "
            f"lists are missing",
            [f"{p} not found (panoptic PNG)" for p in missing_pngs] + [f"{p} not found (image)" for p in missing_jpgs],
            fix="; ".join(fixes))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_plain_name(value: Any) -> bool:
    """A file name without folders (so that outputs stay in their folder)."""
    return isinstance(value, str) and value not in ("", ".", "..") and Path(value).name == value


def _ids(ids: Sequence[int], shown: int = 10) -> str:
    return ", ".join(map(str, ids[:shown])) + (f", ... ({len(ids)} in all)" if len(ids) > shown else "")


# ------------------------------------------------------------------------------------- conversion


def semantic_label(segment_map: np.ndarray, segment_ids: Sequence[int],
                   classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert a panoptic segment map to a semantic label map.

    ``segment_map`` (uint32, (H, W)) holds segment ids, 0 unlabelled; ``segment_ids`` are the distinct
    ids ``segments_info`` lists and ``classes`` their class ids (0..254). Returns ``(label, pixels,
    unlisted)``: ``label`` (uint8, (H, W)) holds ``classes[k]`` where the map holds ``segment_ids[k]``
    and ``IGNORE`` elsewhere; ``pixels[k]`` is the pixel count of segment ``k``; ``unlisted`` the
    sorted ids other than 0 that the map holds but ``segment_ids`` lacks (their pixels are ``IGNORE``).
    """
    order = np.argsort(np.asarray(segment_ids, np.int64), kind="stable")
    known = np.concatenate([[0], np.asarray(segment_ids, np.uint32)[order]]).astype(np.uint32)
    lut = np.concatenate([[IGNORE], np.asarray(classes, np.int64)[order]]).astype(np.uint8)
    index = np.searchsorted(known, segment_map)
    np.minimum(index, known.size - 1, out=index)
    listed = known[index] == segment_map
    unlisted = np.unique(segment_map[~listed])
    index[~listed] = 0
    counts = np.bincount(index.ravel(), minlength=known.size)[1:]
    pixels = np.empty_like(counts)
    pixels[order] = counts
    return lut[index], pixels, unlisted


def _jobs(root: Path, split: str, doc: Doc, contiguous: Mapping[int, int], stage: Path) -> list[_Job]:
    """One job per annotation of the checked ``doc``, in annotation order."""
    images = {im["id"]: im for im in doc["images"]}
    jobs = []
    for ann in doc["annotations"]:
        image = images[ann["image_id"]]
        name = f"{Path(image['file_name']).stem}.png"
        segments = ann["segments_info"]
        jobs.append(_Job(split=split, panoptic=root / PANOPTIC_IN[split] / ann["file_name"],
                         image=root / IMAGES[split] / image["file_name"], output=root / SEMANTIC_OUT[split] / name,
                         staged=stage / name, annotations=root / JSON_IN[split], image_id=image["id"],
                         size=(image["width"], image["height"]), segment_ids=tuple(s["id"] for s in segments),
                         classes=tuple(contiguous[s["category_id"]] for s in segments)))
    return jobs


def _convert_split(jobs: Sequence[_Job], split: str, progress: bool) -> _SplitResult:
    """Convert every job of ``split``, staging the label maps whose bytes change."""
    present = np.zeros(IGNORE, bool)
    staged: list[str] = []
    empty = 0
    with tqdm(total=len(jobs), desc=f"coco-panoptic {split}", unit="image", disable=not progress) as bar:
        for job, converted in zip(jobs, _converted(jobs)):
            present[list(converted.classes)] = True
            empty += converted.empty_segments
            if converted.staged:
                staged.append(job.staged.name)
            bar.update()
    return _SplitResult(staged=tuple(staged), names=frozenset(j.output.name for j in jobs),
                        present=np.flatnonzero(present), empty_segments=empty)


def _converted(jobs: Sequence[_Job]) -> Iterator[_Converted]:
    """:func:`_convert` of each job, in order: in this process for a small split, else in a pool of
    spawned processes (safe beside threads; a script calling the preparer must guard its entry point
    with ``if __name__ == "__main__"``). Leaving the pool, also on an error, ends its workers at once."""
    affinity = getattr(os, "sched_getaffinity", None)
    workers = min(MAX_WORKERS, len(affinity(0)) if affinity else os.cpu_count() or 1)
    if workers < 2 or len(jobs) < PARALLEL_MIN_IMAGES:
        yield from map(_convert, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_convert, jobs, chunksize=CHUNK)


def _convert(job: _Job) -> _Converted:
    """Check one image's panoptic PNG and image size, and stage its label map if its bytes change."""
    segment_map = _segment_map(job.panoptic, job.size, job.image_id)
    found = image_size(job.image, "JPEG", FIX)
    if found != job.size:
        raise OvbenchError(f"{job.image}: {found[0]}x{found[1]}, the JSON gives image {job.image_id} as "
                           f"{job.size[0]}x{job.size[1]}; use the official images: {image_source(job.split)}")
    label, pixels, unlisted = semantic_label(segment_map, job.segment_ids, job.classes)
    if unlisted.size:
        first = int(unlisted[0])
        raise OvbenchError(
            f"{job.panoptic}: {int(np.count_nonzero(np.isin(segment_map, unlisted)))} pixels hold segment ids that "
            f"the segments_info of image {job.image_id} in {job.annotations} lacks ({len(unlisted)} id(s), first "
            f"{first} = RGB {first % 256},{first // 256 % 256},{first // 65536}): the PNG is corrupt or belongs "
            f"to another annotation; {FIX}")
    data = png_bytes(label)
    changed = not _holds(job.output, data)
    if changed:
        atomic_write(job.staged, lambda f: f.write(data))
    return _Converted(staged=changed, classes=tuple(sorted({c for c, n in zip(job.classes, pixels) if n})),
                      empty_segments=int(np.count_nonzero(pixels == 0)))


def _segment_map(path: Path, size: tuple[int, int], image_id: int) -> np.ndarray:
    """The segment ids (uint32, (H, W)) of a COCO panoptic PNG: R + 256 G + 256^2 B; ``size`` is (W, H)."""
    try:
        with Image.open(path) as im:
            image_format, mode = im.format, im.mode
            rgb = np.asarray(im)
    except Exception as e:  # PIL raises many types for truncated or foreign files
        raise OvbenchError(f"{path}: cannot be decoded as a PNG ({type(e).__name__}: {e}); {FIX}") from e
    if image_format != "PNG" or mode != "RGB":
        raise OvbenchError(f"{path}: a {image_format} image of mode {mode}; COCO panoptic PNGs are RGB PNGs "
                           f"(segment id = R + 256 G + 256^2 B); {FIX}")
    if (rgb.shape[1], rgb.shape[0]) != size:
        raise OvbenchError(f"{path}: {rgb.shape[1]}x{rgb.shape[0]}, the JSON gives image {image_id} as "
                           f"{size[0]}x{size[1]}; the PNG belongs to another image or is corrupt; {FIX}")
    rgb = rgb.astype(np.uint32)
    return rgb[..., 0] | rgb[..., 1] << 8 | rgb[..., 2] << 16


def _holds(path: Path, data: bytes) -> bool:
    """Whether the file ``path`` exists and holds exactly ``data``."""
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _commit(stage: Path, out_dir: Path, result: _SplitResult) -> int:
    """Move the staged label maps into ``out_dir`` and remove stale ones there; returns how many were removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in result.staged:
        os.replace(stage / name, out_dir / name)
    return remove_stale(out_dir, set(result.names))


# ------------------------------------------------------------------------------------- split files and report


def restrict_segments(doc: Doc, keep: Collection[int], drop_images: bool) -> Doc:
    """``doc`` with each annotation's ``segments_info`` and the ``categories`` cut to the category ids
    in ``keep`` (order kept); with ``drop_images``, the images holding any other segment are dropped
    with their annotations instead. Other keys are kept as they are."""
    annotations: list[dict[str, Any]] = []
    dropped: set[int] = set()
    for ann in doc["annotations"]:
        kept = [s for s in ann["segments_info"] if s["category_id"] in keep]
        if drop_images and len(kept) < len(ann["segments_info"]):
            dropped.add(ann["image_id"])
        else:
            annotations.append({**ann, "segments_info": kept})
    return {**doc, "images": [im for im in doc["images"] if im["id"] not in dropped], "annotations": annotations,
            "categories": [c for c in doc["categories"] if c["id"] in keep]}


def _write_split_files(root: Path, docs: Mapping[str, Doc], base: Collection[int],
                       novel: Collection[int]) -> list[FileSummary]:
    """Write GKC's four split files (module docstring) and summarise them."""
    files = []
    for path, split, keep, drop in ((BASE_IGNORE_OUT, "train", base, False), (BASE_DELETE_OUT, "train", base, True),
                                    (VAL_BASE_OUT, "val", base, False), (VAL_NOVEL_OUT, "val", novel, False)):
        doc = restrict_segments(docs[split], keep, drop)
        write_json(root / path, doc)
        dropped = {"images_dropped": len(docs[split]["images"]) - len(doc["images"])} if drop else {}
        files.append(FileSummary(path, "wrote", {
            "images": len(doc["images"]), **dropped, "categories": len(doc["categories"]),
            "segments": sum(len(a["segments_info"]) for a in doc["annotations"]),
            "images_without_segments": sum(not a["segments_info"] for a in doc["annotations"])}))
    return files


def _segment_counts(doc: Doc, novel: Collection[int]) -> dict[str, int]:
    """Images, segments, novel segments and crowd segments of a checked panoptic JSON."""
    segments = [s for a in doc["annotations"] for s in a["segments_info"]]
    return {"images": len(doc["images"]), "segments": len(segments),
            "novel_segments": sum(s["category_id"] in novel for s in segments),
            "crowd_segments": sum(bool(s.get("iscrowd")) for s in segments)}


def _notes(docs: Mapping[str, Doc], results: Mapping[str, _SplitResult], files: Sequence[FileSummary],
           num_base: int, num_novel: int) -> tuple[str, ...]:
    notes = [f"{split}: {len(docs[split]['images'])} images, the official {split}2017 set {OFFICIAL_IMAGES[split]}; "
             f"results are not comparable with the official {split} set"
             for split in SPLITS if len(docs[split]["images"]) != OFFICIAL_IMAGES[split]]
    notes += [f"{split}: {results[split].empty_segments} segment(s) of segments_info have no pixel in their PNG"
              for split in SPLITS if results[split].empty_segments]
    without = {f.path.rsplit("/", 1)[-1]: f.counts["images_without_segments"] for f in files
               if f.path.startswith(SPLIT_OUT)}
    notes += [
        "label maps: a segment's pixels hold the contiguous id of its category (its position in the protocol's "
        "dataset_ids, 0..132), crowd segments included; unlabelled pixels 255",
        f"{SEMANTIC_OUT['train']} keeps all 133 classes: train on the {num_base} base classes with the config key "
        "data.classes: base (novel pixels become 255 at load time, ovbench/data/training.py vocabulary_lookup)",
        f"{SPLIT_OUT}: GKC's split ({num_novel} novel, {num_base} base classes); only base_delete drops images. "
        "GKC's prepare_coco_novel_json.py also drops the images left without a kept segment: "
        + ", ".join(f"{n} in {name}" for name, n in without.items())]
    return tuple(notes)


PREPARER = Preparer(
    name="coco-panoptic",
    help="COCO 2017 panoptic -> coco-panoptic-133 label maps (train, val) and GKC's base/novel panoptic JSON files",
    inputs=tuple(f for split in SPLITS for f in (
        InputFile(JSON_IN[split], f"COCO 2017 panoptic {split} annotations", ANNOTATION_SOURCE),
        InputFile(PANOPTIC_IN[split] + "/", f"COCO 2017 panoptic {split} PNGs (<stem>.png)", png_source(split)),
        InputFile(IMAGES[split] + "/", f"COCO 2017 {split} images (<stem>.jpg)", image_source(split)))),
    outputs=(SEMANTIC_OUT["val"] + "/", SEMANTIC_OUT["train"] + "/", BASE_IGNORE_OUT, BASE_DELETE_OUT, VAL_BASE_OUT,
             VAL_NOVEL_OUT),
    run=run,
    protocols=(PROTOCOL,))

__all__ = ["PREPARER", "restrict_segments", "semantic_label"]
