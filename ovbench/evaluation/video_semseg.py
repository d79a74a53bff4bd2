"""Video semantic-segmentation evaluation: per-frame mIoU and video consistency, in one pass per video.

A submission has the image-semseg format with ids ``<video>/<frame>`` (``<video>/<frame>.png``
in a folder, zip or tar; see :mod:`ovbench.submissions.semseg`). Each video is one worker task:
its frames are read from last to first, every pair is checked and counted into the confusion
matrix (:mod:`ovbench.metrics.semseg`) and into the window counts of
:mod:`ovbench.metrics.video_consistency`. Nothing is scored unless every frame is valid.
"""
from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from ovbench.data.semseg import SemsegGroundTruth
from ovbench.errors import OvbenchError, ValidationError
from ovbench.evaluation.semseg import (PairCheck, SemsegAccumulator, default_workers, match_ids,
                                       read_and_score, tasks_for)
from ovbench.metrics.confusion import SparseConfusion
from ovbench.metrics.video_consistency import consistency_metrics, group_lookup, window_counts
from ovbench.protocols.schema import Protocol
from ovbench.records.provenance import combined_digest
from ovbench.submissions.semseg import SemsegSubmission

DEFAULT_WINDOWS = (8, 16)
#: Label maps are uint8 or uint16, so a lookup table over every uint16 value covers any ground truth.
LABEL_VALUES = 2 ** 16
FIX = ("see docs: one single-channel PNG per frame, named <video>/<frame>.png like the ground truth's frames "
       "(frames in file-name order), pixel = class index")


@dataclass(frozen=True)
class VideoCheck:
    """What a worker needs: the pair check, the label -> partition table and the VC window lengths."""

    pairs: PairCheck
    groups: np.ndarray
    windows: tuple[int, ...]


@dataclass
class VideoResult:
    video: str
    frame_ids: list[str]
    problems: list[str]
    confusions: list[SparseConfusion]
    windows: dict[int, np.ndarray]
    digests: list[tuple[str, str, str]]          # (frame id, prediction sha256, ground truth sha256)


def video_of(frame_id: str) -> str:
    """``"<video>/<frame>"`` -> ``"<video>"``."""
    if "/" not in frame_id:
        raise OvbenchError(f"frame id {frame_id!r} is not <video>/<frame>; check the protocol's layout")
    return frame_id.rsplit("/", 1)[0]


def score_video(check: VideoCheck, video: str, tasks: Sequence[tuple]) -> VideoResult:
    """Check and count one video; ``tasks`` are its frames' ``read_and_score`` tasks in frame order."""
    result = VideoResult(video, [t[0] for t in tasks], [], [], {}, [])

    def frames_backwards() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for task in reversed(tasks):
            r, pred, gt = read_and_score(check.pairs, task)
            result.problems += r.problems
            result.digests.append((r.image_id, r.pred_sha256, r.gt_sha256))
            if r.confusion is not None:
                result.confusions.append(r.confusion)
            if result.problems:
                continue                                     # keep reading to list every problem
            yield gt, pred

    counts = window_counts(frames_backwards(), len(tasks), check.windows, check.groups)
    if not result.problems:
        result.windows = counts
    return result


_WORKER: VideoCheck | None = None


def _init(check: VideoCheck) -> None:
    global _WORKER
    _WORKER = check


def _worker(job: tuple[str, list[tuple]]) -> VideoResult:
    assert _WORKER is not None
    return score_video(_WORKER, *job)


def _imap(check: VideoCheck, jobs: Iterator[tuple[str, list[tuple]]], workers: int) -> Iterator[VideoResult]:
    if workers <= 1:
        yield from (score_video(check, *job) for job in jobs)
        return
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(workers, initializer=_init, initargs=(check,)) as pool:
        yield from pool.imap(_worker, jobs)


@dataclass
class VideoSemsegEvaluation:
    metrics: dict[str, Any]
    videos: list[str]
    num_frames: int
    predictions_sha256: str
    ground_truth_sha256: str


def evaluate_video_semseg_submission(protocol: Protocol, predictions: Path | str, data_root: Path | str,
                                     workers: int | None = None, progress: bool = True) -> VideoSemsegEvaluation:
    """Validate and score a video semseg submission: image-semseg metrics over all frames plus VC/VCc.

    Raises :class:`ValidationError` listing every problem (missing/extra frames, unreadable or
    corrupt files, wrong mode, size or values) before anything is scored.
    """
    if protocol.task != "video-semseg":
        raise OvbenchError(f"protocol {protocol.id} is a {protocol.task} protocol, not video-semseg")
    protocol.require_classes()
    windows = tuple(protocol.evaluation.get("vc_windows", DEFAULT_WINDOWS))
    gt = SemsegGroundTruth(protocol, data_root)
    gt_ids = gt.ids()
    check = VideoCheck(PairCheck(protocol.num_classes, protocol.ignore_label),
                       group_lookup(LABEL_VALUES, protocol.class_ids("base"), protocol.class_ids("novel")), windows)
    sub = SemsegSubmission(predictions)
    try:
        matched, problems = match_ids(protocol, sub, gt_ids)
        by_video: dict[str, list[str]] = {}
        for frame_id in matched:
            by_video.setdefault(video_of(frame_id), []).append(frame_id)
        if problems:             # frames missing or extra: consistency windows would be wrong
            raise ValidationError(f"{sub.path}: submission for {protocol.id} is invalid", problems, FIX)
        jobs = ((video, list(tasks_for(sub, gt, sorted(frames)))) for video, frames in sorted(by_video.items()))
        acc = SemsegAccumulator(protocol)
        window_counts_by_n: dict[int, list[np.ndarray]] = {n: [] for n in windows}
        digests = []
        for r in tqdm(_imap(check, jobs, workers or default_workers()), total=len(by_video),
                      desc=f"evaluate {protocol.id}", unit="video", disable=not progress):
            problems += r.problems
            digests += r.digests
            if not problems:
                for frame_id, conf in zip(reversed(r.frame_ids), r.confusions):
                    acc.add(frame_id, conf)
                for n in windows:
                    window_counts_by_n[n].append(r.windows[n])
    finally:
        sub.close()
    if problems:
        raise ValidationError(f"{sub.path}: submission for {protocol.id} is invalid", problems, FIX)
    metrics = acc.metrics()
    metrics.pop("num_images", None)
    metrics.update(consistency_metrics(window_counts_by_n))
    metrics["num_videos"], metrics["num_frames"] = len(by_video), len(matched)
    digests.sort()
    return VideoSemsegEvaluation(metrics=metrics, videos=sorted(by_video), num_frames=len(matched),
                                 predictions_sha256=combined_digest([(i, p) for i, p, _ in digests]),
                                 ground_truth_sha256=combined_digest([(i, g) for i, _, g in digests]))

