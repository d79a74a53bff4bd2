"""Detection submissions: a COCO results JSON list, plain or gzipped, checked before scoring.

Each entry::

    {"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float,
     "segmentation": {"size": [h, w], "counts": "<compressed RLE>"}}   # optional

``bbox`` is in pixels, ``x, y`` the top-left corner; ``category_id`` is the protocol's id (the
dataset's category id); ``score`` lies in ``[0, 1]``. Masks are COCO compressed RLE of the whole
image (``pycocotools.mask.encode``, ``counts`` decoded to ASCII), given for every entry or none.

:func:`check_detections` finds every problem at once and raises one :class:`ValidationError`;
nothing is scored unless the whole submission is valid. An image with more detections than the
protocol's cap is an error unless ``truncate`` is set, in which case its highest-scoring
detections are kept and the truncation is reported.
"""
from __future__ import annotations

from itertools import chain
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ovbench.errors import ValidationError
from ovbench.submissions.json_list import load_json_list
from ovbench.submissions.problems import EXAMPLES, Problems, is_int, is_number
from ovbench.submissions.rle import rle_run_totals

#: How many offending entries or images each problem line names.
FIX = ("write a COCO results list: one {image_id, category_id, bbox [x, y, w, h], score in [0, 1]"
       "[, segmentation RLE]} per detection, ids as in the protocol's annotation file")


def load_detections(path: Path | str) -> tuple[list[Any], str]:
    """The COCO results list in ``path`` (plain or gzipped JSON) and the file's SHA-256."""
    return load_json_list(path, "a COCO results .json or .json.gz", FIX)


@dataclass
class Truncation:
    """Detections dropped to respect the per-image cap (only with ``truncate``)."""

    cap: int
    images: int = 0
    dropped: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"cap": self.cap, "images": self.images, "dropped": self.dropped}


@dataclass
class CheckedDetections:
    """A valid submission: entries in input order (after any truncation) and what was found."""

    entries: list[dict[str, Any]]
    has_masks: bool
    truncation: Truncation
    max_per_image: int


def _entry_problems(i: int, e: Any, images: Mapping[int, tuple[int, int]], categories: set[int],
                    problems: Problems) -> bool:
    """Record what is wrong with entry ``i``; True when it is well formed."""
    if not isinstance(e, dict):
        problems.add("entries are not objects", f"entry {i} is {type(e).__name__}")
        return False
    ok = True
    missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in e]
    if missing:
        problems.add("entries lack required keys", f"entry {i} has no {', '.join(missing)}")
        return False
    image_id, category_id, bbox, score = e["image_id"], e["category_id"], e["bbox"], e["score"]
    if not is_int(image_id) or image_id not in images:
        problems.add("entries have an image_id that is not in the protocol's annotation file",
                     f"entry {i}: {image_id!r}")
        ok = False
    if not is_int(category_id) or category_id not in categories:
        problems.add("entries have a category_id that is not one of the protocol's classes",
                     f"entry {i}: {category_id!r}")
        ok = False
    if not is_number(score) or not 0.0 <= score <= 1.0:
        problems.add("entries have a non-finite score or one outside [0, 1]", f"entry {i}: {score!r}")
        ok = False
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
        problems.add("entries have a bbox that is not 4 finite numbers [x, y, w, h]", f"entry {i}: {bbox!r}")
        ok = False
    elif bbox[2] <= 0 or bbox[3] <= 0:
        problems.add("entries have a box of zero or negative width or height (bbox is [x, y, w, h], "
                     "not [x1, y1, x2, y2])", f"entry {i}: {bbox!r}")
        ok = False
    return ok


def _mask_problems(indexed: Sequence[tuple[int, dict[str, Any]]], images: Mapping[int, tuple[int, int]],
                   problems: Problems) -> None:
    """Check the ``segmentation`` RLE of every ``(entry index, well-formed entry)`` (all carry one)."""
    strings, expected, where = [], [], []
    for i, e in indexed:
        seg = e["segmentation"]
        h, w = images[e["image_id"]]
        if isinstance(seg, list):
            problems.add("masks are polygons; give compressed RLE (pycocotools.mask.encode)", f"entry {i}")
            continue
        if not isinstance(seg, dict) or not isinstance(seg.get("counts"), str) or "size" not in seg:
            problems.add("masks are not compressed RLE {size: [h, w], counts: str} (encode with "
                         "pycocotools.mask.encode and decode counts to ASCII)", f"entry {i}")
            continue
        size = seg["size"]
        if not (isinstance(size, list) and len(size) == 2 and all(is_int(v) for v in size)):
            problems.add("masks have a size that is not [height, width] as two integers", f"entry {i}: {size!r}")
            continue
        if size != [h, w]:
            problems.add("masks have a size different from their image's [height, width]",
                         f"entry {i}: {seg['size']} vs [{h}, {w}] of image {e['image_id']}")
            continue
        strings.append(seg["counts"])
        expected.append(h * w)
        where.append(i)
    if not strings:
        return
    totals, non_negative = rle_run_totals(strings)
    for j in np.flatnonzero((totals != np.asarray(expected)) | ~non_negative):
        problems.add("masks have malformed RLE counts (runs do not cover the image exactly)",
                     f"entry {where[j]}")


@dataclass
class _Columns:
    """The well-formed entries as arrays: ids ``(N,)`` int64, boxes ``(N, 4)`` and scores ``(N,)`` float64."""

    index: np.ndarray
    image_id: np.ndarray
    category_id: np.ndarray
    bbox: np.ndarray
    score: np.ndarray

    @classmethod
    def of(cls, indexed: Sequence[tuple[int, dict[str, Any]]]) -> "_Columns":
        return cls(index=np.array([i for i, _ in indexed], dtype=np.int64),
                   image_id=np.array([e["image_id"] for _, e in indexed], dtype=np.int64),
                   category_id=np.array([e["category_id"] for _, e in indexed], dtype=np.int64),
                   bbox=np.array([e["bbox"] for _, e in indexed], dtype=np.float64).reshape(-1, 4),
                   score=np.array([e["score"] for _, e in indexed], dtype=np.float64))


def _all_well_formed(entries: Sequence[Any], images: Mapping[int, tuple[int, int]], categories: set[int]) -> bool:
    """True when every entry passes :func:`_entry_problems`, decided in bulk (no messages).

    The common case, a valid submission, is checked with C-level passes and NumPy; only when
    this says no is every entry examined one by one to word the problems.
    """
    if set(map(type, entries)) != {dict}:
        return False
    try:
        image_ids = [e["image_id"] for e in entries]
        category_ids = [e["category_id"] for e in entries]
        boxes = [e["bbox"] for e in entries]
        scores = [e["score"] for e in entries]
    except KeyError:
        return False
    if not (set(map(type, image_ids)) == {int} and set(map(type, category_ids)) == {int}
            and set(map(type, boxes)) == {list} and set(map(len, boxes)) == {4}
            and set(map(type, chain.from_iterable(boxes))) <= {int, float}
            and set(map(type, scores)) <= {int, float}):
        return False
    if not (set(image_ids) <= images.keys() and set(category_ids) <= categories):
        return False
    try:
        b, sc = np.array(boxes, dtype=np.float64), np.array(scores, dtype=np.float64)
    except OverflowError:          # a JSON integer beyond float range
        return False
    return bool(np.isfinite(b).all() and (b[:, 2:] > 0).all() and np.isfinite(sc).all()
                and ((sc >= 0) & (sc <= 1)).all())


def _duplicate_pairs(cols: _Columns) -> list[tuple[int, int]]:
    """``(first, repeat)`` entry indices of rows equal in image, category, box and score."""
    table = np.column_stack([cols.image_id, cols.category_id, cols.bbox, cols.score])
    order = np.lexsort(table.T[::-1])              # stable: equal rows stay in input order
    equal_to_previous = np.r_[False, (table[order[1:]] == table[order[:-1]]).all(axis=1)]
    run_start = np.maximum.accumulate(np.where(equal_to_previous, 0, np.arange(len(order))))
    return [(int(cols.index[order[run_start[j]]]), int(cols.index[order[j]]))
            for j in np.flatnonzero(equal_to_previous)]


def check_detections(entries: Sequence[Any], images: Mapping[int, tuple[int, int]], categories: set[int],
                     cap: int, truncate: bool = False, source: str = "predictions") -> CheckedDetections:
    """Validate a COCO results list against the ground truth's images and the protocol's classes.

    ``images`` maps image id to ``(height, width)``; ``cap`` is the protocol's largest per-image
    detection count. Raises :class:`ValidationError` listing every problem.
    """
    problems = Problems()
    if not entries:
        raise ValidationError(str(source), ["the list is empty: there is nothing to score"], FIX)
    if _all_well_formed(entries, images, categories):
        indexed = list(enumerate(entries))
    else:
        indexed = [(i, e) for i, e in enumerate(entries) if _entry_problems(i, e, images, categories, problems)]
    good = [e for _, e in indexed]
    with_masks = sum("segmentation" in e for e in good)
    if 0 < with_masks < len(good):
        for i, e in indexed:
            if "segmentation" not in e:
                problems.add("entries lack a segmentation while others have one (give masks for all or none)",
                             f"entry {i}")
    elif with_masks:
        _mask_problems(indexed, images, problems)
    cols = _Columns.of(indexed)
    for first, repeat in _duplicate_pairs(cols):
        problems.add("duplicate entries (same image, category, box and score)", f"entries {first} and {repeat}")
    ids, counts = np.unique(cols.image_id, return_counts=True)
    over = {int(i): int(n) for i, n in zip(ids, counts) if n > cap}
    if over and not truncate:
        shown = ", ".join(f"image {img}: {n}" for img, n in sorted(over.items())[:EXAMPLES])
        problems.add(f"images have more than the protocol's {cap} detections per image (keep the top {cap} "
                     f"by score, or pass --truncate to let ovbench do it and record that)", shown, count=len(over))
    lines = problems.lines()
    if lines:
        raise ValidationError(str(source), lines, FIX)
    truncation = Truncation(cap=cap)
    kept = good
    if over:
        kept = top_per_image(good, cap)
        truncation.images, truncation.dropped = len(over), len(good) - len(kept)
    return CheckedDetections(entries=kept, has_masks=bool(with_masks), truncation=truncation,
                             max_per_image=min(int(counts.max()), cap))


def top_per_image(entries: Sequence[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
    """Each image's ``cap`` highest-scoring entries (ties: earlier first), in input order."""
    order = sorted(range(len(entries)), key=lambda i: (entries[i]["image_id"], -entries[i]["score"], i))
    keep, count, current = [], 0, None
    for i in order:
        image_id = entries[i]["image_id"]
        count = count + 1 if image_id == current else 1
        current = image_id
        if count <= cap:
            keep.append(i)
    return [entries[i] for i in sorted(keep)]
