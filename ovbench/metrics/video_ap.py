"""Video instance AP as YouTube-VIS defines it, with pycocotools doing the matching and accumulation.

YouTube-VIS (``youtubevos/cocoapi``, ``PythonAPI/pycocotools/ytvoseval.py``) is COCO's evaluation
with videos in place of images and tracks in place of annotations, and two changes:

- the IoU of a predicted and a ground-truth track is spatio-temporal, Σ_t |d_t ∩ g_t| / Σ_t |d_t ∪ g_t|
  over the video's frames; a frame where only one of the two has a mask adds that mask to the union,
  and the IoU is 0 when the union is empty. Crowd ground truth gets this same IoU (not COCO's
  intersection over the prediction's area); it is ignored and may match many predictions, as in COCO;
- a track's area, for the small / medium / large ranges, is its mean area over the frames where its
  mask is not empty, and the ranges are 128² and 256² pixels (not COCO's 32² / 96²).

Here the IoU matrices are computed up front, one per (video, category), with one pycocotools
``mask.iou`` call per frame for all of its tracks (:func:`spatiotemporal_iou`), and pycocotools' own
``COCOeval`` is run with ``computeIoU`` looking them up; everything else (score order, the
``maxDets`` cut, matching, ignore rules, interpolated precision) is the library's. Base / novel
numbers average the one precision array over each partition's categories
(:func:`ovbench.metrics.detection.precision_summary`), never dividing by the total number of
classes as the LV-VIS server does.
"""
from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ovbench.metrics.detection import COCO_STATS, BackendResult, coco_style_metrics
from ovbench.submissions.rle import rle_areas

#: YouTube-VIS ``maxDets``: the track caps per (video, category) for AR@1, AR@10 and AP.
MAX_DETS = [1, 10, 100]
#: YouTube-VIS area ranges in pixels of a track's mean non-empty mask area (bounds inclusive).
AREA_RANGES = [[0.0, 1e5 ** 2], [0.0, 128.0 ** 2], [128.0 ** 2, 256.0 ** 2], [256.0 ** 2, 1e5 ** 2]]
AREA_LABELS = ["all", "small", "medium", "large"]

#: A track: one COCO compressed RLE dict (``{"size": [h, w], "counts": str | bytes}``) or None per frame.
Track = Sequence[Mapping[str, Any] | None]

def frame_areas(tracks: Sequence[Track], num_frames: int) -> np.ndarray:
    """Mask area per track and frame, shape ``(N, num_frames)`` float64 pixels (0 where None).

    Raises ``ValueError`` when a track does not have exactly ``num_frames`` entries.
    """
    for k, track in enumerate(tracks):
        if len(track) != num_frames:
            raise ValueError(f"track {k} has {len(track)} frames, the video {num_frames}")
    present = np.array([[s is not None for s in track] for track in tracks], dtype=bool).reshape(-1, num_frames)
    areas = np.zeros(present.shape)
    masks = [s for track in tracks for s in track if s is not None]
    if masks:
        areas[present] = rle_areas(masks)
    return areas


def mean_area(areas: np.ndarray) -> np.ndarray:
    """Each row's mean over its non-zero entries (0 when none): ``(N, T)`` -> ``(N,)`` pixels."""
    non_empty = areas > 0
    count = non_empty.sum(axis=1)
    return np.divide(areas.sum(axis=1), count, out=np.zeros(len(areas)), where=count > 0)


def _intersections(dt_tracks: Sequence[Track], gt_tracks: Sequence[Track], dt_areas: np.ndarray,
                   gt_areas: np.ndarray) -> np.ndarray:
    """Σ_t |d_t ∩ g_t| per pair, ``(D, G)`` pixels, from one ``mask_utils.iou`` call per frame.

    With u = a_d + a_g - i, IoU = i / u gives i = IoU (a_d + a_g) / (1 + IoU); the rounding
    makes it exact (the error is far below half a pixel for any realistic frame size).
    """
    inter = np.zeros((len(dt_tracks), len(gt_tracks)))
    for t in range(dt_areas.shape[1] if inter.size else 0):
        d = np.flatnonzero(dt_areas[:, t] > 0)
        g = np.flatnonzero(gt_areas[:, t] > 0)
        if not (d.size and g.size):
            continue
        iou = np.asarray(mask_utils.iou([dt_tracks[i][t] for i in d], [gt_tracks[j][t] for j in g],
                                        [0] * g.size)).reshape(d.size, g.size)
        total = dt_areas[d, t][:, None] + gt_areas[g, t][None, :]
        inter[np.ix_(d, g)] += np.rint(iou * total / (1.0 + iou))
    return inter


def _iou_from_areas(dt_tracks: Sequence[Track], gt_tracks: Sequence[Track], dt_areas: np.ndarray,
                    gt_areas: np.ndarray) -> np.ndarray:
    inter = _intersections(dt_tracks, gt_tracks, dt_areas, gt_areas)
    union = dt_areas.sum(axis=1)[:, None] + gt_areas.sum(axis=1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def spatiotemporal_iou(dt_tracks: Sequence[Track], gt_tracks: Sequence[Track], num_frames: int) -> np.ndarray:
    """YouTube-VIS IoU of every (predicted, ground-truth) track pair, shape ``(D, G)`` in [0, 1].

    Σ_t |d_t ∩ g_t| / Σ_t |d_t ∪ g_t|; a frame where one track is None adds the other's area to
    the union; 0 where the union is empty. All masks of a frame must have the same size.
    """
    dt_areas, gt_areas = frame_areas(dt_tracks, num_frames), frame_areas(gt_tracks, num_frames)
    return _iou_from_areas(dt_tracks, gt_tracks, dt_areas, gt_areas)


class TrackCOCOeval(COCOeval):
    """``COCOeval`` over videos ("images") and tracks ("annotations") whose IoU is looked up.

    ``ious[video_id, category_id]`` is the spatio-temporal IoU of that video's predicted tracks
    of the category (rows) with its ground-truth tracks of the category (columns);
    ``dt_row[id - 1]`` / ``gt_col[id - 1]`` give the row / column of the predicted / ground-truth
    annotation ``id``. Created with ``iouType="bbox"`` only so that ``_prepare`` does not convert
    per-image masks (a track has none); the IoU is never a box IoU.
    """

    def __init__(self, coco_gt: COCO, coco_dt: COCO, ious: Mapping[tuple[int, int], np.ndarray],
                 dt_row: np.ndarray, gt_col: np.ndarray) -> None:
        super().__init__(coco_gt, coco_dt, iouType="bbox")
        self.params.maxDets = list(MAX_DETS)
        self.params.areaRng = [list(r) for r in AREA_RANGES]
        self.params.areaRngLbl = list(AREA_LABELS)
        self._track_ious = ious
        self._dt_row = dt_row
        self._gt_col = gt_col

    def computeIoU(self, imgId: int, catId: int) -> np.ndarray | list:
        """Rows: the (video, category)'s predictions by descending score (stable), cut at
        ``maxDets[-1]``, exactly as ``COCOeval.computeIoU`` orders them; columns: its ground truth."""
        gt, dt = self._gts[imgId, catId], self._dts[imgId, catId]
        if not gt and not dt:
            return []
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")[:self.params.maxDets[-1]]
        rows = self._dt_row[np.array([dt[i]["id"] - 1 for i in order], dtype=np.int64)]
        cols = self._gt_col[np.array([g["id"] - 1 for g in gt], dtype=np.int64)]
        return self._track_ious[int(imgId), int(catId)][np.ix_(rows, cols)]


def _coco(video_ids: Sequence[int], category_ids: Sequence[int], annotations: list[dict[str, Any]]) -> COCO:
    coco = COCO()
    coco.dataset = {"images": [{"id": v} for v in video_ids], "categories": [{"id": c} for c in category_ids],
                    "annotations": annotations}
    coco.createIndex()
    return coco


def _by_video(tracks: Sequence[Mapping[str, Any]], videos: Mapping[int, Any], what: str) -> dict[int, np.ndarray]:
    """Positions of ``tracks`` per video id."""
    out: dict[int, list[int]] = defaultdict(list)
    for k, track in enumerate(tracks):
        if track["video_id"] not in videos:
            raise ValueError(f"{what} track {k} is in video {track['video_id']!r}, which is not in the ground truth")
        out[track["video_id"]].append(k)
    return {v: np.array(ks, dtype=np.int64) for v, ks in out.items()}


@dataclass
class _Overlaps:
    """What COCOeval needs from the masks: per-(video, category) IoU matrices, each track's row or
    column in its matrix, and each track's mean non-empty area (pixels)."""

    ious: dict[tuple[int, int], np.ndarray]
    dt_row: np.ndarray
    gt_col: np.ndarray
    dt_area: np.ndarray
    gt_area: np.ndarray


def _overlaps(videos: Mapping[int, tuple[int, int, int]], gt_tracks: Sequence[Mapping[str, Any]],
              dt_tracks: Sequence[Mapping[str, Any]]) -> _Overlaps:
    """Areas once per video; IoU only between tracks of the same category (as COCOeval uses it)."""
    gt_of, dt_of = _by_video(gt_tracks, videos, "ground-truth"), _by_video(dt_tracks, videos, "predicted")
    out = _Overlaps({}, np.zeros(len(dt_tracks), np.int64), np.zeros(len(gt_tracks), np.int64),
                    np.zeros(len(dt_tracks)), np.zeros(len(gt_tracks)))
    none = np.zeros(0, np.int64)
    for video_id, (num_frames, _, _) in videos.items():
        g, d = gt_of.get(video_id, none), dt_of.get(video_id, none)
        g_segs = [gt_tracks[k]["segmentations"] for k in g]
        d_segs = [dt_tracks[k]["segmentations"] for k in d]
        g_frames, d_frames = frame_areas(g_segs, num_frames), frame_areas(d_segs, num_frames)
        out.gt_area[g], out.dt_area[d] = mean_area(g_frames), mean_area(d_frames)
        g_cat = np.array([gt_tracks[k]["category_id"] for k in g], dtype=np.int64)
        d_cat = np.array([dt_tracks[k]["category_id"] for k in d], dtype=np.int64)
        for c in np.union1d(g_cat, d_cat):
            gi, di = np.flatnonzero(g_cat == c), np.flatnonzero(d_cat == c)
            out.gt_col[g[gi]], out.dt_row[d[di]] = np.arange(gi.size), np.arange(di.size)
            out.ious[video_id, int(c)] = _iou_from_areas([d_segs[i] for i in di], [g_segs[j] for j in gi],
                                                         d_frames[di], g_frames[gi])
    return out


def evaluate_video_ap(videos: Mapping[int, tuple[int, int, int]], gt_tracks: Sequence[Mapping[str, Any]],
                      dt_tracks: Sequence[Mapping[str, Any]], category_ids: Sequence[int]) -> BackendResult:
    """YouTube-VIS AP of ``dt_tracks`` over ``category_ids`` (maxDets [1, 10, 100] per video and category).

    ``videos`` maps video id to ``(num_frames, height, width)``; ground-truth tracks carry
    ``video_id``, ``category_id``, ``segmentations`` (compressed RLE or None per frame) and
    optionally ``iscrowd``; predicted tracks carry ``video_id``, ``category_id``, ``score`` and
    ``segmentations`` (checked with :func:`ovbench.submissions.video_instance.check_tracks`).
    Returns the precision array ``(10, 101, K, 4)`` at maxDets 100 and COCO's 12 summary numbers.
    """
    o = _overlaps(videos, gt_tracks, dt_tracks)
    gt_anns = [{"id": k + 1, "image_id": t["video_id"], "category_id": t["category_id"], "area": float(o.gt_area[k]),
                "iscrowd": int(t.get("iscrowd", 0))} for k, t in enumerate(gt_tracks)]
    dt_anns = [{"id": k + 1, "image_id": t["video_id"], "category_id": t["category_id"], "area": float(o.dt_area[k]),
                "iscrowd": 0, "score": float(t["score"])} for k, t in enumerate(dt_tracks)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = _coco(sorted(videos), sorted(category_ids), gt_anns)
        ev = TrackCOCOeval(coco_gt, _coco(sorted(videos), sorted(category_ids), dt_anns), o.ious, o.dt_row, o.gt_col)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    p = ev.params
    return BackendResult(backend="pycocotools", stats=dict(zip(COCO_STATS, (float(s) for s in ev.stats[:12]))),
                         precision=np.asarray(ev.eval["precision"])[..., -1], category_ids=[int(c) for c in p.catIds],
                         iou_thresholds=np.asarray(p.iouThrs), area_labels=list(p.areaRngLbl))


def video_ap_metrics(result: BackendResult, partitions: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """The OV video metrics (0-100, None where undefined) of one :func:`evaluate_video_ap` result.

    Keys: ``AP_{all,base,novel}``, ``AP50_*``, ``AP75_*``, ``APs_all``, ``APm_all``, ``APl_all``,
    ``AR1``, ``AR10`` (recall with 1 / 10 tracks per video and category, all classes) and
    ``AP_per_class`` {category id string: AP}. ``partitions`` maps ``"base"`` / ``"novel"`` to ids.
    """
    suffix = f"@{MAX_DETS[-1]}"
    out = {k.removesuffix(suffix): v for k, v in coco_style_metrics(result, partitions, MAX_DETS[-1]).items()}
    for n in MAX_DETS[:2]:
        value = result.stats[f"AR@{n}"]
        out[f"AR{n}"] = None if value < 0 else value * 100.0
    return out
