"""``ovbench demo``: the main job end to end on the embedded synthetic world.

generate the world -> fit each reference predictor on base classes, and load each baseline model
(:data:`DEMO_MODELS`: shipped weights trained by ``ovbench train`` on base classes, or training-free)
-> predict ``synth-ov`` val (timed) -> evaluate with bootstrap CIs -> write result and speed records.
Then the detection rows on ``synth-ovd`` (:data:`DEMO_DETECTORS`): the trained detectors are too large
to ship, so they are the reference detectors of :mod:`baselines.reference.boxes` (connected components
of the fitted ``pixel-texture`` label map, base-only or classified by the frozen tiny CLIP) -> predict
val (timed) -> COCO box and mask AP -> result and speed records. Finally build the leaderboard and
print both tables and where their plots are. Runs in a few minutes on 2 CPU cores (the detection
rows in well under a minute).
"""
from __future__ import annotations

import importlib
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ovbench.errors import OvbenchError
from ovbench.evaluation.detection import evaluate_detection_submission
from ovbench.evaluation.semseg import evaluate_semseg_submission
from ovbench.leaderboard import build_leaderboards
from ovbench.protocols import get_protocol
from ovbench.records.provenance import code_version, hardware, utc_timestamp
from ovbench.records.result import reproduced_record, write_record_with_per_image
from ovbench.records.store import SPEED_SCHEMA, write_speed_record
from ovbench.synth import generate_world, read_world

if TYPE_CHECKING:
    from baselines.reference import PixelTextureClassifier

PROTOCOL_ID = "synth-ov"
DETECTION_PROTOCOL_ID = "synth-ovd"
#: Models the demo runs: (name, package, model file (``.pt``) or model config (``.yaml``) relative to
#: that package, how its weights came about).
DEMO_MODELS = (
    ("naive-finetune", "baselines", "naive_finetune/weights/synth-ov.pt",
     "trained by `ovbench train baselines/naive_finetune/configs/synth-ov.yaml` on synth-ov train, base classes"),
    ("two-stage", "baselines", "two_stage/configs/synth-ov.yaml",
     "the naive fine-tuned segmenter's masks, each crop classified by the frozen tiny CLIP (no training)"),
    ("maskclip", "baselines", "maskclip/configs/synth-ov.yaml", "training-free: the tiny CLIP's dense features"),
    ("gkc", "methods", "gkc/weights/synth-ov.pt",
     "trained by `ovbench train methods/gkc/configs/synth-ov.yaml` on synth-ov train, base classes"),
)
#: Detection rows on :data:`DETECTION_PROTOCOL_ID`: (name in ``baselines.reference.boxes.DETECTORS``, how
#: it detects). Both start from the ``pixel-texture`` classifier fitted on synth-ov train, base classes.
DEMO_DETECTORS = (
    ("texture-boxes", "connected components of each predicted thing class (base classes only)"),
    ("texture-boxes+clip", "connected thing-vs-stuff components, each box crop classified by the frozen tiny CLIP"),
)


@dataclass
class DemoReport:
    """What the demo wrote: ``markdown`` maps each protocol with rows to its Markdown table."""

    world: Path
    root: Path
    tables: Path
    records: list[Path] = field(default_factory=list)
    markdown: dict[str, Path] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)


def _latency_summary(latencies_s: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000 for t in latencies_s)
    return {"median": statistics.median(ms), "p90": ms[min(len(ms) - 1, int(0.9 * len(ms)))],
            "mean": statistics.fmean(ms), "std": statistics.pstdev(ms)}


def speed_record(method: str, latencies_s: list[float], image_size: str) -> dict:
    """A CPU speed record of per-image model latency (``predict`` on a decoded image)."""
    hw = hardware()
    lat = _latency_summary(latencies_s)
    return {"schema": SPEED_SCHEMA, "method": method, "device": {"class": "cpu", "name": hw["cpu"]},
            "setting": {"input": image_size, "batch": 1, "precision": "fp32", "images": len(latencies_s),
                        "measured": "predict, decoded image (no I/O)"},
            "latency_ms": lat, "images_per_s": 1000.0 / lat["mean"], "timestamp": utc_timestamp(),
            "hardware": hw, "ovbench": code_version()}


def demo_methods() -> list[str]:
    """Every row the demo can run: the reference predictors, :data:`DEMO_MODELS`, then :data:`DEMO_DETECTORS`."""
    from baselines.reference import PREDICTORS
    return sorted(PREDICTORS) + [name for name, _, _, _ in DEMO_MODELS] + [name for name, _ in DEMO_DETECTORS]


def _ap50(metrics: dict, iou: str, cap: int = 100) -> str:
    """``"AP50 all (base b, novel n)"`` of one IoU type at per-image cap ``cap``."""
    m = metrics[iou]
    return (f"{m[f'AP50_all@{cap}']:.1f} (base {m[f'AP50_base@{cap}']:.1f}, "
            f"novel {m[f'AP50_novel@{cap}']:.1f})")


def run_demo(workdir: Path, root: Path | None = None, seed: int = 0, bootstrap: int = 1000,
             progress: bool = True, log: Callable[[str], None] = print,
             only: Sequence[str] | None = None) -> DemoReport:
    """Run the demo in ``workdir``; records go under ``root`` (default ``workdir/leaderboards``);
    ``only`` restricts it to those rows (names from :func:`demo_methods`)."""
    from baselines.reference import PREDICTORS  # models stay out of ovbench's import graph until the demo runs
    from ovbench.inference import predict_protocol
    from ovbench.models.zoo import load_model

    chosen = set(demo_methods() if only is None else only)
    unknown = sorted(chosen - set(demo_methods()))
    if unknown:
        raise OvbenchError(f"unknown demo row(s) {unknown}; choose from {', '.join(demo_methods())}")
    workdir = Path(workdir)
    world = workdir / "synth-world"
    root = Path(root) if root is not None else workdir / "leaderboards"
    report = DemoReport(world=world, root=root, tables=root / "tables")
    info = read_world(world)
    if info is not None and info.get("seed") == seed:
        log(f"[1/4] reusing the synthetic world in {world} (seed {seed})")
    else:
        log(f"[1/4] generating the synthetic world in {world} (seed {seed})")
        generate_world(world, seed=seed, progress=progress)
    protocol = get_protocol(PROTOCOL_ID)
    size = f"{read_world(world)['sizes']['image_size']}x{read_world(world)['sizes']['image_size']}"

    def record(name: str, pred_dir: Path, latencies: list[float], config: dict) -> None:
        result = evaluate_semseg_submission(protocol, pred_dir, world, bootstrap=bootstrap, seed=seed,
                                            progress=progress)
        inputs = {"predictions": str(pred_dir), "predictions_sha256": result.predictions_sha256,
                  "ground_truth_sha256": result.ground_truth_sha256, "num_images": len(result.image_ids)}
        config = {**config, "world_seed": seed, "bootstrap": bootstrap}
        rec = reproduced_record(name, protocol, result.metrics, inputs, config)
        report.records.append(write_record_with_per_image(root, rec, result.image_ids, result.per_image))
        report.records.append(write_speed_record(root, speed_record(name, latencies, size)))
        m = result.metrics
        log(f"      mIoU {m['mIoU']:.1f} (base {m['mIoU_base']:.1f}, novel {m['mIoU_novel']:.1f}, "
            f"hIoU {m['hIoU']:.1f}), {1 / statistics.fmean(latencies):.1f} img/s")

    fitted = {}
    for name, cls in sorted(PREDICTORS.items()):
        if name not in chosen:
            continue
        log(f"[2/4] {name}: fitting on base classes of {PROTOCOL_ID} train, predicting val")
        start = time.perf_counter()
        fitted[name] = predictor = cls().fit(world, protocol)
        fit_s = time.perf_counter() - start
        pred_dir = workdir / "predictions" / name
        latencies = predictor.predict_split(world, protocol, pred_dir, progress=progress)
        record(name, pred_dir, latencies, {"predictor": name, "trained_on": f"{PROTOCOL_ID} train, base classes only",
                                           "fit_seconds": round(fit_s, 2)})

    for name, package, relative, provenance in DEMO_MODELS:
        if name not in chosen:
            continue
        path = Path(importlib.import_module(package).__file__).parent / relative
        model = load_model(path)
        log(f"[2/4] {name}: {provenance}; predicting val")
        pred_dir = workdir / "predictions" / name
        run = predict_protocol(model, protocol, world, pred_dir, overwrite=True, progress=progress)
        config = {"model": f"{package}/{relative}", "weights": provenance,
                  **{f"{k}_per_image": run.per_image(k) for k in run.counters if k != "images"}}
        record(name, pred_dir, run.latencies_s, config)

    detectors = [name for name, _ in DEMO_DETECTORS if name in chosen]
    if detectors:
        _detection_rows(detectors, report, fitted.get("pixel-texture"), workdir / "predictions", seed, progress, log)

    log(f"[3/4] building the leaderboard from {root}")
    built = build_leaderboards(root, report.tables)
    log("[4/4] done\n")
    for pid in (PROTOCOL_ID, DETECTION_PROTOCOL_ID):
        if pid not in built.protocols:
            continue
        report.markdown[pid] = report.tables / f"{pid}.md"
        plots = [p for p in built.plots if p.name.startswith(f"{pid}__")]
        report.plots += plots
        log(report.markdown[pid].read_text())
        for plot in plots:
            log(f"plot:   {plot}")
    log(f"tables: {report.tables}")
    return report


def _detection_rows(rows: Sequence[str], report: DemoReport, texture: "PixelTextureClassifier | None",
                    pred_dir: Path, seed: int, progress: bool, log: Callable[[str], None]) -> None:
    """The :data:`DEMO_DETECTORS` ``rows`` on :data:`DETECTION_PROTOCOL_ID` val: predict into
    ``pred_dir/<row>.json`` (timed per image), score, write a result and a speed record each.
    ``texture``: the demo's fitted ``pixel-texture`` classifier, or None to fit one here on
    :data:`PROTOCOL_ID` train. Logs the seconds the rows took in all (a fit here included)."""
    from baselines.reference import PixelTextureClassifier
    from baselines.reference.boxes import DETECTORS
    from ovbench.inference.detection import predict_protocol_detection

    segmentation, protocol = get_protocol(PROTOCOL_ID), get_protocol(DETECTION_PROTOCOL_ID)
    side = read_world(report.world)["sizes"]["image_size"]
    start = time.perf_counter()
    texture = texture if texture is not None else PixelTextureClassifier().fit(report.world, segmentation)
    names = {c.id: c.name for c in segmentation.require_classes()}   # label-map class id -> name
    for name in rows:
        log(f"[2/4] {name} ({DETECTION_PROTOCOL_ID} detection): {dict(DEMO_DETECTORS)[name]}; predicting val")
        detector = DETECTORS[name](texture, names)
        out = pred_dir / f"{name}.json"
        run = predict_protocol_detection(detector, protocol, report.world, out, overwrite=True, progress=progress)
        run.counters = detector.counters()   # the writer assumes no CLIP; the detector counts its own forwards
        result = evaluate_detection_submission(protocol, out, report.world, progress=progress)
        inputs = {"predictions": str(out), "predictions_sha256": result.predictions_sha256,
                  "ground_truth_sha256": result.ground_truth_sha256, "num_images": result.num_images,
                  "num_detections": result.num_detections}
        config = {**detector.config(), "label_maps": f"pixel-texture, fitted on {segmentation.id} train, base "
                                                     f"classes only",
                  "clip_image_forwards_per_image": run.per_image("clip_image_forwards"), "world_seed": seed}
        rec = reproduced_record(name, protocol, result.metrics, inputs, config, evaluation=result.evaluation_info())
        report.records.append(write_record_with_per_image(report.root, rec, None, None))
        report.records.append(write_speed_record(report.root, speed_record(name, run.latencies_s, f"{side}x{side}")))
        log(f"      box AP50 {_ap50(result.metrics, 'bbox')}, mask AP50 {_ap50(result.metrics, 'segm')}, "
            f"{1 / statistics.fmean(run.latencies_s):.1f} img/s")
    log(f"      {DETECTION_PROTOCOL_ID} rows: {time.perf_counter() - start:.1f} s in all")
