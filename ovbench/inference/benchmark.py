"""One model over several semantic-segmentation protocols: predict, evaluate and record each
(``ovbench benchmark``), e.g. a paper's zero-shot test suite.

Every protocol's ground truth is checked before anything runs, so that a missing dataset is
reported with the others (and its preparation command) instead of after an hour of predictions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ovbench.data.semseg import SemsegGroundTruth
from ovbench.errors import OvbenchError
from ovbench.evaluation.semseg import evaluate_semseg_submission
from ovbench.inference.semseg import predict_protocol
from ovbench.models.api import SemanticSegmenter
from ovbench.protocols import Protocol, get_protocol
from ovbench.records.result import reproduced_record, write_record_with_per_image

#: Named protocol lists. ``gkc-zero-shot``: GKC's Table 1 (trained on COCO-Panoptic 133, tested
#: zero-shot on the others); ``synth``: the synthetic world.
SUITES: dict[str, tuple[str, ...]] = {
    "gkc-zero-shot": ("coco-panoptic-133", "ade-150", "ade-847", "pascal-context-59", "pascal-context-459",
                      "pascal-voc-20", "cityscapes-19"),
    "synth": ("synth-ov",),
}


@dataclass
class BenchmarkRow:
    """One protocol's outcome: its metrics, the model's images per second and the record written."""

    protocol: str
    metrics: dict[str, Any]
    images_per_s: float
    record: Path | None


def suite_protocols(suite: str | None, protocols: Sequence[str]) -> list[Protocol]:
    """The protocols of ``suite`` (a :data:`SUITES` name) followed by ``protocols``, without repeats."""
    if suite is not None and suite not in SUITES:
        raise OvbenchError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    ids = [*(SUITES[suite] if suite else ()), *protocols]
    if not ids:
        raise OvbenchError("give --suite NAME or at least one --protocol ID")
    chosen = [get_protocol(pid) for pid in dict.fromkeys(ids)]
    wrong = [p.id for p in chosen if p.task != "semseg"]
    if wrong:
        raise OvbenchError(f"ovbench benchmark runs semseg protocols; not: {', '.join(wrong)}")
    return chosen


def missing_data(protocols: Sequence[Protocol], data_root: Path | str) -> dict[str, str]:
    """Protocol id -> the error its ground truth gives under ``data_root`` (empty: all present)."""
    missing = {}
    for protocol in protocols:
        try:
            SemsegGroundTruth(protocol, data_root).ids()
        except OvbenchError as e:
            missing[protocol.id] = str(e)
    return missing


def evaluate_model(model: SemanticSegmenter, protocol: Protocol, data_root: Path | str, predictions: Path,
                   method: str, config: Mapping[str, Any], root: Path | None, names: str = "canonical",
                   progress: bool = True) -> BenchmarkRow:
    """Predict ``protocol`` into ``predictions``, evaluate, and write a reproduced record named
    ``method`` under ``root`` (None: no record). ``config`` goes into the record beside the model's
    images per second and per-image work counters."""
    done = predict_protocol(model, protocol, data_root, predictions, names=names, overwrite=True, progress=progress)
    result = evaluate_semseg_submission(protocol, predictions, data_root, progress=progress)
    path = None
    if root is not None:
        full = {**config, "names": names, "images_per_s": done.images_per_second,
                **{f"{k}_per_image": done.per_image(k) for k in done.counters if k != "images"}}
        inputs = {"predictions": str(predictions), "predictions_sha256": result.predictions_sha256,
                  "ground_truth_sha256": result.ground_truth_sha256, "num_images": len(result.image_ids)}
        record = reproduced_record(method, protocol, result.metrics, inputs, full)
        path = write_record_with_per_image(root, record, result.image_ids, result.per_image)
    return BenchmarkRow(protocol.id, dict(result.metrics), done.images_per_second, path)


def run_benchmark(model: SemanticSegmenter, protocols: Sequence[Protocol], data_root: Path | str, out: Path,
                  root: Path | None, config: Mapping[str, Any], skip_missing: bool = False,
                  names: str = "canonical", progress: bool = True) -> tuple[list[BenchmarkRow], dict[str, str]]:
    """:func:`evaluate_model` for every protocol whose data is present (predictions in
    ``out/<protocol>``); returns the rows and the skipped protocols with their reasons. Raises
    listing every missing dataset unless ``skip_missing``."""
    missing = missing_data(protocols, data_root)
    if missing and not skip_missing:
        raise OvbenchError(f"{len(missing)} of {len(protocols)} protocol(s) lack data under {data_root}: "
                           + "; ".join(f"{pid}: {why}" for pid, why in missing.items())
                           + " (prepare them, or pass --skip-missing)")
    rows = [evaluate_model(model, p, data_root, out / p.id, model.name, config, root, names, progress)
            for p in protocols if p.id not in missing]
    return rows, missing
