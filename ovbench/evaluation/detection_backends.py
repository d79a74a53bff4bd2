"""The AP libraries ovbench delegates to, behind one call each: AP is never re-implemented here.

Backends:

- ``faster-coco-eval`` — the default; C++ matching and accumulation, bit-exact with pycocotools,
  and LVIS-style federated evaluation with ``lvis_style=True``.
- ``pycocotools`` — the reference for COCO-style protocols.
- ``lvis`` — the official LVIS API, the reference for LVIS-style protocols (run through
  :mod:`ovbench.evaluation.lvis_compat` because of NumPy 2).

Every call gets fresh shallow copies of the annotation and detection dicts (the libraries add
keys to them), detections already limited to ``cap`` per image by the caller, and returns a
:class:`~ovbench.metrics.detection.BackendResult`: the library's own summary numbers and its accumulated precision array.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ovbench.errors import OvbenchError
from ovbench.evaluation.lvis_compat import numpy_aliases
from ovbench.metrics.detection import COCO_STATS, LVIS_STATS, BackendResult

BACKENDS = ("faster-coco-eval", "pycocotools", "lvis")
REFERENCE = {"coco": "pycocotools", "lvis": "lvis"}


def check_backend(backend: str, style: str) -> None:
    """Raise unless ``backend`` can score a protocol of evaluation ``style`` ("coco" or "lvis")."""
    if backend not in BACKENDS:
        raise OvbenchError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "faster-coco-eval" and backend != REFERENCE[style]:
        raise OvbenchError(f"backend {backend!r} cannot score a {style}-style protocol; use faster-coco-eval "
                           f"or {REFERENCE[style]}")


@contextlib.contextmanager
def _quiet_logger(name: str):
    """Hide a library's INFO/WARNING chatter (it would mix with the JSON ovbench prints)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _copies(items: Sequence[dict[str, Any]], drop: str | None = None) -> list[dict[str, Any]]:
    return [{k: v for k, v in d.items() if k != drop} for d in items]


def _results_for(detections: Sequence[dict[str, Any]], iou_type: str) -> list[dict[str, Any]]:
    """Mask AP drops ``bbox`` so that mask area decides small/medium/large (as detectron2 does)."""
    return _copies(detections, drop="bbox" if iou_type == "segm" else None)


def evaluate_coco(backend: str, gt: dict[str, Any], detections: Sequence[dict[str, Any]], iou_type: str,
                  cap: int) -> BackendResult:
    """COCOeval over every category of ``gt`` with ``maxDets = [1, 10, cap]``."""
    dataset = {**gt, "annotations": _copies(gt["annotations"])}
    results = _results_for(detections, iou_type)
    if backend == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster
        silent = lambda *a, **k: None  # noqa: E731
        coco_gt = COCO(dataset, print_function=silent)
        ev = COCOeval_faster(coco_gt, coco_gt.loadRes(results), iou_type, print_function=silent)
    else:
        from pycocotools.coco import COCO as RefCOCO
        from pycocotools.cocoeval import COCOeval
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = RefCOCO()
            coco_gt.dataset = dataset
            coco_gt.createIndex()
            ev = COCOeval(coco_gt, coco_gt.loadRes(results), iou_type)
    ev.params.maxDets = [1, 10, cap]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    p = ev.params
    return BackendResult(backend=backend, stats=dict(zip(COCO_STATS, (float(s) for s in ev.stats[:12]))),
                         precision=np.asarray(ev.eval["precision"])[..., -1], category_ids=list(p.catIds),
                         iou_thresholds=np.asarray(p.iouThrs), area_labels=list(p.areaRngLbl))


def evaluate_lvis(backend: str, gt_path: Path, gt: dict[str, Any], detections: Sequence[dict[str, Any]],
                  iou_type: str, cap: int) -> BackendResult:
    """Federated LVIS evaluation (negative and not-exhaustive category lists honoured), ``cap`` per image."""
    results = _results_for(detections, iou_type)
    if backend == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster
        silent = lambda *a, **k: None  # noqa: E731
        coco_gt = COCO({**gt, "annotations": _copies(gt["annotations"])}, print_function=silent)
        ev = COCOeval_faster(coco_gt, coco_gt.loadRes(results), iou_type, lvis_style=True, print_function=silent)
        ev.params.maxDets = [cap]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        stats = dict(zip(LVIS_STATS[:6], (float(s) for s in ev.stats[:6])))
        for group, name in enumerate(("APr", "APc", "APf")):
            stats[name] = float(ev._summarize(1, maxDets=cap, freq_group_idx=group))
        p = ev.params
        return BackendResult(backend=backend, stats=stats, precision=np.asarray(ev.eval["precision"])[..., -1],
                             category_ids=list(p.catIds), iou_thresholds=np.asarray(p.iouThrs),
                             area_labels=list(p.areaRngLbl))
    from lvis import LVIS, LVISEval, LVISResults
    with _quiet_logger("lvis"):
        lvis_gt = LVIS(str(gt_path))
        ev = LVISEval(lvis_gt, LVISResults(lvis_gt, results, max_dets=cap), iou_type)
        ev.params.max_dets = cap
        with numpy_aliases():
            ev.run()
    p = ev.params
    return BackendResult(backend=backend, stats={k: float(ev.results[k]) for k in LVIS_STATS},
                         precision=np.asarray(ev.eval["precision"]), category_ids=list(p.cat_ids),
                         iou_thresholds=np.asarray(p.iou_thrs), area_labels=list(p.area_rng_lbl))
