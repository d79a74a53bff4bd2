"""``ovbench demo``: the main job end to end on the embedded synthetic world.

generate the world -> fit each reference predictor on base classes, and load each baseline model
(:data:`DEMO_MODELS`: shipped weights trained by ``ovbench train`` on base classes, or training-free)
-> predict val (timed) -> evaluate with bootstrap CIs -> write result and speed records -> build the
leaderboard -> print the table and where the plots are. Runs in a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import importlib
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ovbench.errors import OvbenchError
from ovbench.evaluation.semseg import evaluate_semseg_submission
from ovbench.leaderboard import build_leaderboards
from ovbench.protocols import get_protocol
from ovbench.records.provenance import code_version, hardware, utc_timestamp
from ovbench.records.result import reproduced_record, write_record_with_per_image
from ovbench.records.store import SPEED_SCHEMA, write_speed_record
from ovbench.synth import generate_world, read_world

PROTOCOL_ID = "synth-ov"
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


@dataclass
class DemoReport:
    world: Path
    root: Path
    tables: Path
    records: list[Path] = field(default_factory=list)
    table_markdown: Path | None = None
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
    """Every row the demo can run: the reference predictors, then :data:`DEMO_MODELS`."""
    from baselines.reference import PREDICTORS
    return sorted(PREDICTORS) + [name for name, _, _, _ in DEMO_MODELS]


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

    for name, cls in sorted(PREDICTORS.items()):
        if name not in chosen:
            continue
        log(f"[2/4] {name}: fitting on base classes of {PROTOCOL_ID} train, predicting val")
        start = time.perf_counter()
        predictor = cls().fit(world, protocol)
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

    log(f"[3/4] building the leaderboard from {root}")
    built = build_leaderboards(root, report.tables)
    report.table_markdown = report.tables / f"{PROTOCOL_ID}.md"
    report.plots = [p for p in built.plots if p.name.startswith(PROTOCOL_ID)]
    log("[4/4] done\n")
    log(report.table_markdown.read_text())
    log(f"tables: {report.tables}")
    for plot in report.plots:
        log(f"plot:   {plot}")
    return report
