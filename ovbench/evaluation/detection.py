"""Detection and instance-segmentation evaluation: offline (a results file) and online (detectron2 interface).

:func:`evaluate_detection_submission` loads the protocol's annotation file, checks the whole
submission (:mod:`ovbench.submissions.detection`), then, for each IoU type and each per-image cap
the protocol names, keeps each image's best ``cap`` detections and hands them to the chosen
backend (:mod:`ovbench.evaluation.detection_backends`). :class:`DetectionEvaluator` collects
model outputs image by image and does the same in ``evaluate()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ovbench.data.detection import DetectionGroundTruth
from ovbench.errors import OvbenchError
from ovbench.evaluation.detection_backends import check_backend, evaluate_coco, evaluate_lvis
from ovbench.metrics.detection import BackendResult, coco_style_metrics, lvis_style_metrics
from ovbench.protocols.schema import Protocol
from ovbench.submissions.detection import (CheckedDetections, Truncation, check_detections,
                                           load_detections, top_per_image)

DEFAULT_BACKEND = "faster-coco-eval"


@dataclass(frozen=True)
class DetectionSettings:
    """A detection protocol's evaluation settings (its ``evaluation`` block)."""

    style: str                     # "coco" or "lvis"
    iou_types: tuple[str, ...]     # subset of ("bbox", "segm")
    caps: tuple[int, ...]          # per-image detection caps reported, ascending

    @classmethod
    def of(cls, protocol: Protocol) -> "DetectionSettings":
        if protocol.task != "detection":
            raise OvbenchError(f"protocol {protocol.id} is a {protocol.task} protocol, not a detection one")
        e = protocol.evaluation
        return cls(style=e.get("style", "coco"), iou_types=tuple(e.get("iou_types", ("bbox",))),
                   caps=tuple(sorted(int(c) for c in e.get("max_detections", (100,)))))

    @property
    def submission_cap(self) -> int:
        """The most detections one image may have in a submission."""
        return self.caps[-1]


@dataclass
class DetectionEvaluation:
    """What :func:`evaluate_detection_submission` found.

    ``metrics`` is nested by IoU type (``{"bbox": {...}, "segm": {...}}``, 0-100 scale);
    ``skipped`` names IoU types the protocol has but the submission could not be scored on.
    """

    metrics: dict[str, dict[str, Any]]
    backend: str
    num_images: int
    num_detections: int
    truncation: Truncation
    skipped: dict[str, str] = field(default_factory=dict)
    predictions_sha256: str = ""
    ground_truth_sha256: str = ""

    def evaluation_info(self) -> dict[str, Any]:
        """How the numbers were computed, for the result record."""
        return {"backend": self.backend, "backend_version": backend_version(self.backend),
                "truncation": self.truncation.to_dict(), "skipped": dict(self.skipped)}


def backend_version(backend: str) -> str:
    """The installed version of a backend package (result records carry it)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(backend)
    except PackageNotFoundError:
        return "unknown"


def score_detections(protocol: Protocol, gt: DetectionGroundTruth, checked: CheckedDetections,
                     backend: str = DEFAULT_BACKEND, progress: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """Metrics of validated detections; returns ``(metrics by IoU type, skipped IoU types)``."""
    settings = DetectionSettings.of(protocol)
    check_backend(backend, settings.style)
    skipped = {}
    iou_types = list(settings.iou_types)
    if "segm" in iou_types and not checked.has_masks:
        iou_types.remove("segm")
        skipped["segm"] = "the submission has no segmentation masks"
    partitions = {"base": protocol.class_ids("base"), "novel": protocol.class_ids("novel")}
    steps = [(iou, cap) for iou in iou_types for cap in settings.caps]
    metrics: dict[str, Any] = {iou: {} for iou in iou_types}
    done: dict[str, tuple[int, BackendResult]] = {}
    for iou, cap in tqdm(steps, desc=f"{protocol.id} ({backend})", unit="eval", disable=not progress):
        previous = done.get(iou)
        if previous is not None and checked.max_per_image <= previous[0]:
            result = previous[1]          # no image has more than the smaller cap: same evaluation
        else:
            kept = top_per_image(checked.entries, cap) if checked.max_per_image > cap else checked.entries
            if settings.style == "lvis":
                result = evaluate_lvis(backend, gt.path, gt.dataset, kept, iou, cap)
            else:
                result = evaluate_coco(backend, gt.dataset, kept, iou, cap)
        done[iou] = (cap, result)
        if settings.style == "lvis":
            metrics[iou].update(lvis_style_metrics(result, cap))
        else:
            metrics[iou].update(coco_style_metrics(result, partitions, cap))
    return metrics, skipped


def evaluate_detection_submission(protocol: Protocol, predictions: Path | str, data_root: Path | str,
                                  backend: str = DEFAULT_BACKEND, truncate: bool = False,
                                  progress: bool = True) -> DetectionEvaluation:
    """Check and score a COCO results file (``.json`` or ``.json.gz``) on ``protocol``.

    Raises :class:`~ovbench.errors.ValidationError` listing every problem of the submission
    before anything is scored.
    """
    settings = DetectionSettings.of(protocol)
    check_backend(backend, settings.style)
    gt = DetectionGroundTruth.load(protocol, data_root)
    entries, digest = load_detections(predictions)
    checked = check_detections(entries, gt.images, gt.category_ids, settings.submission_cap,
                               truncate=truncate, source=str(predictions))
    metrics, skipped = score_detections(protocol, gt, checked, backend, progress)
    return DetectionEvaluation(metrics=metrics, backend=backend, num_images=len(gt.images),
                               num_detections=len(checked.entries), truncation=checked.truncation,
                               skipped=skipped, predictions_sha256=digest, ground_truth_sha256=gt.sha256)


def instances_to_coco_results(image_id: int, boxes_xyxy: Any, scores: Any, category_ids: Any,
                              masks: Any = None, mask_threshold: float = 0.5) -> list[dict[str, Any]]:
    """COCO result entries of one image's detections.

    ``boxes_xyxy``: ``(N, 4)`` corners in pixels; ``scores``: ``(N,)`` in [0, 1];
    ``category_ids``: ``(N,)`` protocol category ids; ``masks``: ``(N, H, W)`` or ``(N, 1, H, W)``
    booleans or probabilities (thresholded at ``mask_threshold``), or None. Numpy arrays or torch
    tensors (e.g. a torchvision detection model's output dict).
    """
    from pycocotools import mask as mask_utils
    boxes = _numpy(boxes_xyxy).astype(np.float64).reshape(-1, 4)
    scores_np, cats = _numpy(scores).astype(np.float64).reshape(-1), _numpy(category_ids).reshape(-1)
    out = []
    rles = None
    if masks is not None:
        m = _numpy(masks)
        m = m[:, 0] if m.ndim == 4 else m
        binary = np.asfortranarray((m >= mask_threshold) if m.dtype != bool else m).astype(np.uint8)
        rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0))) if len(binary) else []
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        entry = {"image_id": int(image_id), "category_id": int(cats[i]),
                 "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "score": float(scores_np[i])}
        if rles is not None:
            entry["segmentation"] = {"size": [int(s) for s in rles[i]["size"]],
                                     "counts": rles[i]["counts"].decode("ascii")}
        out.append(entry)
    return out


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class DetectionEvaluator:
    """detectron2-style evaluator: ``reset()``, ``process(inputs, outputs)``, ``evaluate()``.

    ``inputs`` are dicts with ``image_id`` (the annotation file's id); ``outputs`` are dicts with
    ``instances``, itself a dict (torchvision's detection output) with ``boxes`` (xyxy), ``scores``,
    ``labels`` (protocol category ids) and optionally ``masks``. ``evaluate()`` returns
    ``{"bbox": {...}, "segm": {...}}`` as :func:`evaluate_detection_submission` does; the
    results list is kept in :attr:`results` (``json.dump`` it to score it again offline).
    """

    def __init__(self, protocol: Protocol, data_root: Path | str, backend: str = DEFAULT_BACKEND,
                 truncate: bool = False) -> None:
        self.protocol = protocol
        self.settings = DetectionSettings.of(protocol)
        check_backend(backend, self.settings.style)
        self.gt = DetectionGroundTruth.load(protocol, data_root)
        self.backend = backend
        self.truncate = truncate
        self.reset()

    def reset(self) -> None:
        self.results: list[dict[str, Any]] = []

    def process(self, inputs: Sequence[Mapping[str, Any]], outputs: Iterable[Mapping[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            inst = out["instances"]
            self.results += instances_to_coco_results(inp["image_id"], inst["boxes"], inst["scores"],
                                                      inst["labels"], inst.get("masks"))

    def evaluate(self) -> dict[str, Any]:
        checked = check_detections(self.results, self.gt.images, self.gt.category_ids,
                                   self.settings.submission_cap, truncate=self.truncate,
                                   source=f"{self.protocol.id} detections")
        metrics, _ = score_detections(self.protocol, self.gt, checked, self.backend)
        return metrics
