"""Video instance submissions: a YouTube-VIS results list of predicted tracks, checked before scoring.

Each entry is one track::

    {"video_id": int, "category_id": int, "score": float,
     "segmentations": [{"size": [h, w], "counts": "<compressed RLE>"} or null, ...]}

with one item per frame of the video, ``null`` where the object is absent (never an empty mask:
YouTube-VIS and BURST use ``null``, and an empty mask only adds frames to a track's union);
``score`` lies in ``[0, 1]``; ids are the protocol's. The file is a JSON list, plain or gzipped,
read with :func:`load_tracks`.

:func:`check_tracks` finds every problem at once and raises one :class:`ValidationError`. A video
with more tracks than the protocol's cap is an error unless ``truncate`` is set, in which case its
highest-scoring tracks are kept and the truncation is reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ovbench.errors import ValidationError
from ovbench.submissions.json_list import load_json_list
from ovbench.submissions.problems import EXAMPLES, Problems, is_int, is_number
from ovbench.submissions.rle import rle_areas, rle_run_totals

FIX = ("write a YouTube-VIS results list: one {video_id, category_id, score in [0, 1], segmentations: "
       "[compressed RLE or null per frame]} per predicted track, ids as in the protocol's annotation file")
KEYS = ("video_id", "category_id", "score", "segmentations")


def load_tracks(path) -> tuple[list[Any], str]:
    """The YouTube-VIS results list in ``path`` (plain or gzipped JSON) and the file's SHA-256."""
    return load_json_list(path, "a YouTube-VIS results .json or .json.gz", FIX)


@dataclass
class TrackTruncation:
    """Tracks dropped to respect the per-video cap (only with ``truncate``)."""

    cap: int
    videos: int = 0
    dropped: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"cap": self.cap, "videos": self.videos, "dropped": self.dropped}


@dataclass
class CheckedTracks:
    """A valid submission: tracks in input order (after any truncation) and what was dropped."""

    entries: list[dict[str, Any]]
    truncation: TrackTruncation


def _track_problems(i: int, e: Any, videos: Mapping[int, tuple[int, int, int]], categories: set[int],
                    problems: Problems) -> tuple[bool, bool]:
    """Record what is wrong with track ``i`` apart from its masks.

    Returns ``(checkable, sound)``: its frames can be checked (known video, one item per frame),
    and nothing but its frames can still be wrong.
    """
    if not isinstance(e, dict):
        problems.add("entries are not objects", f"entry {i} is {type(e).__name__}")
        return False, False
    missing = [k for k in KEYS if k not in e]
    if missing:
        problems.add("entries lack required keys", f"entry {i} has no {', '.join(missing)}")
        return False, False
    video_id, category_id, score, segs = (e[k] for k in KEYS)
    checkable = sound = True
    if not is_int(video_id) or video_id not in videos:
        problems.add("entries have a video_id that is not in the protocol's annotation file",
                     f"entry {i}: {video_id!r}")
        checkable = False
    if not is_int(category_id) or category_id not in categories:
        problems.add("entries have a category_id that is not one of the protocol's classes",
                     f"entry {i}: {category_id!r}")
        sound = False
    if not is_number(score) or not 0.0 <= score <= 1.0:
        problems.add("entries have a non-finite score or one outside [0, 1]", f"entry {i}: {score!r}")
        sound = False
    if not isinstance(segs, list):
        problems.add("entries have segmentations that are not a list (one RLE or null per frame)",
                     f"entry {i}: {type(segs).__name__}")
        checkable = False
    elif checkable and len(segs) != videos[video_id][0]:
        problems.add("tracks have a number of segmentations different from their video's number of frames",
                     f"entry {i}: {len(segs)} vs {videos[video_id][0]} of video {video_id}")
        checkable = False
    return checkable, sound and checkable


def _frame_problems(indexed: Sequence[tuple[int, dict[str, Any]]], videos: Mapping[int, tuple[int, int, int]],
                    problems: Problems) -> set[int]:
    """Check every non-null frame of the ``(entry index, track)`` pairs; return the entries at fault."""
    bad: set[int] = set()
    counts, sizes, where = [], [], []
    for i, e in indexed:
        _, h, w = videos[e["video_id"]]
        segs = e["segmentations"]
        if all(s is None for s in segs):
            problems.add("tracks are null in every frame (drop them: a track without masks can only be a "
                         "false positive)", f"entry {i}")
            bad.add(i)
        for t, s in enumerate(segs):
            if s is None:
                continue
            if not (isinstance(s, dict) and isinstance(s.get("counts"), str) and "size" in s):
                problems.add("frames are not compressed RLE {size: [h, w], counts: str} or null (encode with "
                             "pycocotools.mask.encode and decode counts to ASCII; no polygons or uncompressed RLE)",
                             f"entry {i} frame {t}")
                bad.add(i)
            elif s["size"] != [h, w] or not all(is_int(v) for v in s["size"]):
                problems.add("frames have a size different from their video's [height, width]",
                             f"entry {i} frame {t}: {s['size']!r} vs [{h}, {w}] of video {e['video_id']}")
                bad.add(i)
            else:
                counts.append(s["counts"])
                sizes.append([h, w])
                where.append((i, t))
    if not counts:
        return bad
    totals, non_negative = rle_run_totals(counts)
    malformed = (totals != np.prod(sizes, axis=1)) | ~non_negative
    for j in np.flatnonzero(malformed):
        problems.add("frames have malformed RLE counts (runs do not cover the frame exactly)",
                     "entry {} frame {}".format(*where[j]))
        bad.add(where[j][0])
    well_formed = np.flatnonzero(~malformed)
    if well_formed.size:
        areas = rle_areas([{"size": sizes[j], "counts": counts[j]} for j in well_formed])
        for j in well_formed[np.asarray(areas) == 0]:
            problems.add("frames have an empty mask (area 0); write null for a frame where the object is absent "
                         "(the YouTube-VIS / BURST convention)", "entry {} frame {}".format(*where[j]))
            bad.add(where[j][0])
    return bad


def _duplicates(indexed: Sequence[tuple[int, dict[str, Any]]]) -> list[tuple[int, int]]:
    """``(first, repeat)`` entry indices of tracks equal in video, category, score and every frame's RLE."""
    seen: dict[tuple, int] = {}
    pairs = []
    for i, e in indexed:
        key = (e["video_id"], e["category_id"], e["score"],
               tuple(None if s is None else s["counts"] for s in e["segmentations"]))
        if key in seen:
            pairs.append((seen[key], i))
        else:
            seen[key] = i
    return pairs


def top_per_video(entries: Sequence[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
    """Each video's ``cap`` highest-scoring tracks (ties: earlier first), in input order."""
    order = sorted(range(len(entries)), key=lambda i: (entries[i]["video_id"], -entries[i]["score"], i))
    keep, count, current = [], 0, None
    for i in order:
        count = count + 1 if entries[i]["video_id"] == current else 1
        current = entries[i]["video_id"]
        if count <= cap:
            keep.append(i)
    return [entries[i] for i in sorted(keep)]


def check_tracks(entries: Sequence[Any], videos: Mapping[int, tuple[int, int, int]], categories: set[int],
                 max_per_video: int = 100, truncate: bool = False, source: str = "predictions") -> CheckedTracks:
    """Validate a YouTube-VIS results list against the ground truth's videos and the protocol's classes.

    ``videos`` maps video id to ``(num_frames, height, width)``. Raises :class:`ValidationError`
    listing every problem, grouped by kind with counts and examples.
    """
    problems = Problems()
    if not entries:
        raise ValidationError(str(source), ["the list is empty: there is nothing to score"], FIX)
    indexed, sound = [], set()
    for i, e in enumerate(entries):
        checkable, fields_ok = _track_problems(i, e, videos, categories, problems)
        if checkable:
            indexed.append((i, e))
        if fields_ok:
            sound.add(i)
    sound -= _frame_problems(indexed, videos, problems)
    for first, repeat in _duplicates([(i, e) for i, e in indexed if i in sound]):
        problems.add("duplicate tracks (same video, category, score and segmentations)",
                     f"entries {first} and {repeat}")
    known = [e["video_id"] for e in entries if isinstance(e, dict) and is_int(e.get("video_id"))
             and e["video_id"] in videos]
    ids, per_video = np.unique(np.array(known, dtype=np.int64), return_counts=True)
    over = {int(v): int(n) for v, n in zip(ids, per_video) if n > max_per_video}
    if over and not truncate:
        shown = ", ".join(f"video {v}: {n}" for v, n in sorted(over.items())[:EXAMPLES])
        problems.add(f"videos have more than the protocol's {max_per_video} tracks per video (keep the top "
                     f"{max_per_video} by score, or pass --truncate to let ovbench do it and record that)",
                     shown, count=len(over))
    lines = problems.lines()
    if lines:
        raise ValidationError(str(source), lines, FIX)
    truncation = TrackTruncation(cap=max_per_video)
    kept = list(entries)
    if over:
        kept = top_per_video(kept, max_per_video)
        truncation.videos, truncation.dropped = len(over), len(entries) - len(kept)
    return CheckedTracks(entries=kept, truncation=truncation)
