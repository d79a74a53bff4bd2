"""Video instance evaluation: YouTube-VIS video AP and DAVIS-unsupervised J&F of predicted tracks.

:func:`evaluate_video_instance_submission` loads the protocol's YouTube-VIS ground truth
(:mod:`ovbench.data.video_instance`), checks the whole results list
(:mod:`ovbench.submissions.video_instance`), then computes

- video AP over the vocabulary (:mod:`ovbench.metrics.video_ap`), with base / novel / all from
  the one precision array;
- J&F, class-agnostic: per video the :data:`JF_PROPOSALS` highest-scoring predicted tracks are
  matched to the ground-truth tracks by Hungarian assignment on mean (J+F)/2
  (:mod:`ovbench.metrics.davis`); ``J&F`` = mean over ground-truth tracks of (J-Mean + F-Mean)/2,
  also per partition of the track's class. Videos are scored in worker processes.
"""
from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ovbench.data.video_instance import VideoInstanceGroundTruth
from ovbench.errors import OvbenchError
from ovbench.evaluation.semseg import default_workers
from ovbench.metrics.davis import jf_pairs, match_unsupervised
from ovbench.metrics.video_ap import evaluate_video_ap, video_ap_metrics
from ovbench.protocols.schema import Protocol
from ovbench.submissions.video_instance import TrackTruncation, check_tracks, load_tracks

#: Predicted tracks per video that take part in J&F matching (DAVIS unsupervised's limit).
JF_PROPOSALS = 20


def _masks(tracks: Sequence[Sequence[Mapping[str, Any] | None]], t: int, shape: tuple[int, int]) -> np.ndarray:
    """Frame ``t`` of each track as a ``(N, H, W)`` bool stack (empty where the track is absent)."""
    out = np.zeros((len(tracks), *shape), dtype=bool)
    present = [k for k, tr in enumerate(tracks) if tr[t] is not None]
    if present:
        decoded = mask_utils.decode([tracks[k][t] for k in present])        # (H, W, n)
        out[present] = np.moveaxis(decoded, -1, 0).astype(bool)
    return out


def video_jf(gt_tracks: Sequence[Sequence[Any]], pred_tracks: Sequence[Sequence[Any]], num_frames: int,
             shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Matched per-frame J and F of each ground-truth track, shapes ``(K, T)``.

    ``pred_tracks`` are the proposals in score order (at most :data:`JF_PROPOSALS`); fewer
    proposals than ground-truth tracks are padded with empty ones, as DAVIS does.
    """
    k = len(gt_tracks)
    n = max(len(pred_tracks), k)
    j = np.zeros((n, k, num_frames))
    f = np.zeros((n, k, num_frames))
    empty = [[None] * num_frames] * (n - len(pred_tracks))
    proposals = list(pred_tracks) + empty
    for t in range(num_frames):
        j[:, :, t], f[:, :, t] = jf_pairs(_masks(gt_tracks, t, shape), _masks(proposals, t, shape))
    matched_j, matched_f, _ = match_unsupervised(j, f)
    return matched_j, matched_f


def _video_task(job: tuple[int, list, list, int, tuple[int, int]]) -> tuple[int, np.ndarray, np.ndarray]:
    video, gt_tracks, pred_tracks, num_frames, shape = job
    j, f = video_jf(gt_tracks, pred_tracks, num_frames, shape)
    return video, j.mean(axis=1), f.mean(axis=1)


def _imap(jobs: Iterator[tuple], workers: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    if workers <= 1:
        yield from map(_video_task, jobs)
        return
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(workers) as pool:
        yield from pool.imap(_video_task, jobs)


def jf_metrics(per_track: Sequence[tuple[int, float, float]], novel_ids: set[int]) -> dict[str, float | None]:
    """``J&F``, ``J``, ``F`` (0-100) over ground-truth tracks ``(category id, J-Mean, F-Mean)``, and per partition."""
    out: dict[str, float | None] = {}
    for suffix, keep in (("", lambda c: True), ("_base", lambda c: c not in novel_ids),
                         ("_novel", lambda c: c in novel_ids)):
        rows = np.array([(j, f) for c, j, f in per_track if keep(c)]).reshape(-1, 2)
        j_mean, f_mean = (float(rows[:, 0].mean() * 100), float(rows[:, 1].mean() * 100)) if len(rows) else (None, None)
        out[f"J&F{suffix}"] = None if j_mean is None else (j_mean + f_mean) / 2
        out[f"J{suffix}"], out[f"F{suffix}"] = j_mean, f_mean
    return out


@dataclass
class VideoInstanceEvaluation:
    metrics: dict[str, Any]
    num_videos: int
    num_tracks: int
    truncation: TrackTruncation
    predictions_sha256: str
    ground_truth_sha256: str


def evaluate_video_instance_submission(protocol: Protocol, predictions: Path | str, data_root: Path | str,
                                       truncate: bool = False, workers: int | None = None,
                                       progress: bool = True) -> VideoInstanceEvaluation:
    """Check and score a YouTube-VIS results file on ``protocol``: video AP and J&F.

    Raises :class:`~ovbench.errors.ValidationError` listing every problem before scoring.
    """
    if protocol.task != "video-instance":
        raise OvbenchError(f"protocol {protocol.id} is a {protocol.task} protocol, not video-instance")
    gt = VideoInstanceGroundTruth.load(protocol, data_root)
    entries, digest = load_tracks(predictions)
    cap = max(protocol.evaluation.get("max_detections", [100]))
    checked = check_tracks(entries, gt.videos, gt.category_ids, max_per_video=cap, truncate=truncate,
                           source=str(predictions))
    gt_tracks = [a for tracks in gt.tracks.values() for a in tracks]
    partitions = {"base": protocol.class_ids("base"), "novel": protocol.class_ids("novel")}
    metrics = video_ap_metrics(evaluate_video_ap(gt.videos, gt_tracks, checked.entries, protocol.class_ids()),
                               partitions)
    by_video: dict[int, list[dict[str, Any]]] = {v: [] for v in gt.videos}
    for e in checked.entries:
        by_video[e["video_id"]].append(e)
    jobs = ((v, [a["segmentations"] for a in gt.tracks[v]],
             [e["segmentations"] for e in sorted(by_video[v], key=lambda e: -e["score"])[:JF_PROPOSALS]],
             gt.videos[v][0], gt.videos[v][1:]) for v in sorted(gt.videos) if gt.tracks[v])
    per_track = []
    for v, j_means, f_means in tqdm(_imap(jobs, workers or default_workers()),
                                    total=sum(bool(t) for t in gt.tracks.values()), desc=f"J&F {protocol.id}",
                                    unit="video", disable=not progress):
        per_track += [(a["category_id"], float(j), float(f)) for a, j, f in zip(gt.tracks[v], j_means, f_means)]
    metrics.update(jf_metrics(per_track, set(partitions["novel"])))
    return VideoInstanceEvaluation(metrics=metrics, num_videos=len(gt.videos), num_tracks=len(checked.entries),
                                   truncation=checked.truncation, predictions_sha256=digest,
                                   ground_truth_sha256=gt.sha256)
