"""Detection metrics from a library's accumulated precision, on a 0-100 scale, named with their cap.

The AP libraries (:mod:`ovbench.evaluation.detection_backends`) match detections and accumulate
the interpolated precision array ``(T, R, K, A)``; their summary of a metric is the mean of its
entries that are not -1. The open-vocabulary numbers are the same summary restricted to one
partition's categories (mmdetection's ``OVCocoMetric`` does the same), so base, novel and all
come from one evaluation of the whole vocabulary (the generalized setting).

Names: ``AP_novel@100`` is AP at IoU 0.50:0.95 over the novel classes with each image's 100
best detections; ``AP50``/``AP75`` fix the IoU; ``APs_all``/``APm_all``/``APl_all`` restrict
the area range; ``AP_per_class@N`` maps category id (a string) to AP. LVIS-style protocols report
the library's own ``AP``, ``AP50``, ``AP75``, ``APs/m/l`` and ``APr/c/f``. Undefined values
(no ground truth in the selection) are ``None``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

PARTITIONS = ("all", "base", "novel")
IOU_METRICS = (("AP", None), ("AP50", 0.5), ("AP75", 0.75))
#: Names of COCOeval's 12 summary numbers (maxDets = [1, 10, cap]); "AR@cap" is the third AR.
COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR@1", "AR@10", "AR@cap", "ARs", "ARm", "ARl")
#: Names of LVISEval's AP summary numbers.
LVIS_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


@dataclass
class BackendResult:
    """One (IoU type, cap) evaluation.

    ``stats`` are the library's summary values on a 0-1 scale, -1 where undefined (keys: the
    this module's :data:`COCO_STATS` or :data:`LVIS_STATS`); ``precision`` has shape ``(T, R, K, A)`` (IoU
    thresholds, 101 recall points, categories in ``category_ids`` order, area ranges
    ``area_labels``) at the cap, -1 where a category has no ground truth.

    COCO-style metrics are read from ``precision`` only: pycocotools' summary computes its
    first number (AP) at maxDets = 100 whatever the cap (and -1 when 100 is not among them),
    while faster-coco-eval uses the last maxDets, so the two ``stats`` agree only at cap 100.
    """

    backend: str
    stats: dict[str, float]
    precision: np.ndarray
    category_ids: list[int]
    iou_thresholds: np.ndarray
    area_labels: list[str]


def _percent(value: float) -> float | None:
    return None if value < 0 else float(value) * 100.0


def precision_summary(result: BackendResult, category_ids: Sequence[int] | None = None,
                      iou: float | None = None, area: str = "all") -> float | None:
    """Mean precision over the selected IoU threshold, categories and area range (0-100)."""
    s = result.precision
    if iou is not None:
        s = s[np.flatnonzero(np.isclose(result.iou_thresholds, iou))]
    if category_ids is not None:
        index = {c: k for k, c in enumerate(result.category_ids)}
        s = s[:, :, [index[c] for c in category_ids if c in index]]
    s = s[..., result.area_labels.index(area)]
    valid = s[s > -1]
    return _percent(float(valid.mean())) if valid.size else None


def per_class_ap(result: BackendResult) -> dict[str, float | None]:
    """AP (IoU 0.50:0.95, all areas) per category id, as detectron2 reports it."""
    return {str(c): precision_summary(result, [c]) for c in result.category_ids}


def coco_style_metrics(result: BackendResult, partitions: Mapping[str, Sequence[int]], cap: int) -> dict[str, Any]:
    """The generalized OV metrics of one COCO-style evaluation at ``cap`` detections per image.

    ``partitions`` maps ``"base"`` / ``"novel"`` to category ids; ``"all"`` is every category.
    """
    out: dict[str, Any] = {}
    for name, iou in IOU_METRICS:
        for part in PARTITIONS:
            ids = None if part == "all" else partitions[part]
            out[f"{name}_{part}@{cap}"] = None if ids is not None and not ids else precision_summary(result, ids, iou)
    for size, label in (("APs", "small"), ("APm", "medium"), ("APl", "large")):
        out[f"{size}_all@{cap}"] = precision_summary(result, area=label)
    out[f"AP_per_class@{cap}"] = per_class_ap(result)
    return out


def lvis_style_metrics(result: BackendResult, cap: int) -> dict[str, Any]:
    """The library's LVIS summary at ``cap`` (APr is the novel = rare classes' AP)."""
    out: dict[str, Any] = {f"{k}@{cap}": _percent(v) for k, v in result.stats.items()}
    out[f"AP_per_class@{cap}"] = per_class_ap(result)
    return out
