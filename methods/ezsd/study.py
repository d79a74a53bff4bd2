"""EZSD vs ViLD on the synthetic world (issue 8's claims): every variant over several seeds, at the
full schedule and at a quarter of it, with its training time, recorded as one study.

``python -m methods.ezsd.study --data-root WORLD --runs DIR [--seeds 0 1 2] [--iterations 300]
[--root leaderboards] [--only NAME ...] [--schedules full quarter]`` builds what is missing and reuses what exists:

1. the offline parts, computed once for all seeds (neither paper counts them as training time):
   EZSD's re-normalised tiny CLIP (``methods/ezsd/configs/renorm-synth-ovd.yaml``), EZSD's region
   caches embedded by that CLIP and by the raw one (for the "no re-normalisation" ablation), and
   ViLD's proposal cache from the RPN of the seed-``seeds[0]`` ViLD-text run;
2. each (seed, variant, schedule) detector, seeds outermost: trained (``model.pt`` reused when present), timed
   (wall-clock seconds of ``train_detector``, in ``config.train_seconds`` of the record), predicted
   on ``synth-ovd`` val and evaluated; one reproduced record each with ``config.study`` (see
   :mod:`ovbench.leaderboard.studies`), so ``<root>/tables/synth-ovd__<study>.md`` shows mean ± std
   over seeds, images per second at test and the training time.

Schedules: "full" is ``--iterations`` steps; "quarter" (labelled "¼ steps") is a quarter of them; a variant's LR
milestones and warm-up scale with its length. Every run uses :data:`STUDY_OVERRIDES` (the synthetic
detector without its mask head: the claims are box AP50) on top of the variant's own config.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import baselines
from baselines.vild.proposals import build_cache
from methods.ezsd.crops import BoxAnnotations
from methods.ezsd.regions import RegionSettings, build_region_cache
from methods.ezsd.renorm import CHECKPOINT_NAME, RenormConfig, renormalise
from ovbench.cli import run_script
from ovbench.engine.detector_training import load_detector_run_config, train_detector
from ovbench.errors import OvbenchError
from ovbench.evaluation.detection import evaluate_detection_submission
from ovbench.inference.detection import predict_protocol_detection
from ovbench.leaderboard import build_leaderboards
from ovbench.models.clip import Clip
from ovbench.models.detector.ov_detector import load_detector_file
from ovbench.models.zoo import resolve_weights
from ovbench.protocols import get_protocol
from ovbench.records.result import reproduced_record, write_record_with_per_image

METHODS_DIR = Path(__file__).resolve().parent
VILD_DIR = Path(baselines.__file__).resolve().parent / "vild"
#: The folder holding the ``methods`` and ``baselines`` packages (run configs are named relative to it).
PACKAGES_DIR = METHODS_DIR.parent.parent
PROTOCOL_ID = "synth-ovd"
RAW_CLIP = "builtin:tiny-vit-synth"
#: Applied to every run of the study (before the variant's own overrides).
STUDY_OVERRIDES = ("model.mask=false",)
#: EZSD's CLIP proposals on 128 px images: anchors every 16 px, sides 16-128 (the synth config's recipe).
REGION_SETTINGS = RegionSettings(stride=16, sides=(16.0, 32.0, 64.0, 128.0))
#: ViLD's cached proposals per training image (ViLD: 300 per 1024 px image; the synth config uses 100).
VILD_TOP = 100
#: Schedule name -> (fraction of ``--iterations``, the label in the table).
SCHEDULES = {"full": (1.0, "full"), "quarter": (0.25, "¼ steps")}


@dataclass(frozen=True)
class Variant:
    """One row family of the study: a run config plus overrides; ``regions`` names the EZSD region
    cache it distils from (``"renorm"`` / ``"raw"``), ``proposals`` whether it uses ViLD's cache;
    ``schedules`` the schedule names it runs at."""

    name: str
    config: Path
    overrides: tuple[str, ...] = ()
    regions: str | None = None
    proposals: bool = False
    schedules: tuple[str, ...] = tuple(SCHEDULES)


VARIANTS = (
    Variant("ViLD-text", VILD_DIR / "configs/synth-ovd-text.yaml", schedules=("full",)),
    Variant("ViLD", VILD_DIR / "configs/synth-ovd.yaml", proposals=True),
    Variant("EZSD", METHODS_DIR / "configs/synth-ovd.yaml", regions="renorm"),
    Variant("EZSD, raw CLIP (no re-normalisation)", METHODS_DIR / "configs/synth-ovd.yaml",
            (f"model.clip.pretrained={RAW_CLIP}",), regions="raw"),
    Variant("EZSD, GT regions only (no CLIP proposals)", METHODS_DIR / "configs/synth-ovd.yaml",
            ("method.use_proposals=false",), regions="renorm"),
    Variant("EZSD, uniform region weights", METHODS_DIR / "configs/synth-ovd.yaml",
            ("method.weighting=uniform",), regions="renorm"),
    Variant("EZSD, plain box regression", METHODS_DIR / "configs/synth-ovd.yaml",
            ("model.semantic_regression=false",), regions="renorm"),
)


def slug(name: str) -> str:
    """``"EZSD, raw CLIP (no re-normalisation)"`` -> ``"ezsd-raw-clip-no-re-normalisation"``."""
    out = "".join(c if c.isalnum() else "-" for c in name.lower().replace("¼", "quarter"))
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def schedule_overrides(config: Path, iterations: int) -> list[str]:
    """Overrides running ``config`` for ``iterations`` steps with its LR milestones and warm-up scaled
    by the same factor (at least one warm-up step) and one checkpoint, at the end."""
    train = load_detector_run_config(config).train
    factor = iterations / train.iterations
    milestones = [max(1, round(m * factor)) for m in train.milestones]
    return [f"train.iterations={iterations}", f"train.milestones={milestones}",
            f"train.warmup_iterations={max(1, round(train.warmup_iterations * factor))}",
            f"train.checkpoint_period={iterations}", f"train.log_period={max(1, min(train.log_period, iterations))}"]


@dataclass(frozen=True)
class OfflineParts:
    """Paths of the study's offline parts below ``runs``."""

    runs: Path

    @property
    def renorm(self) -> Path:
        return self.runs / "offline/ezsd-renorm"

    def regions(self, kind: str) -> Path:
        return self.runs / f"offline/ezsd-regions-{kind}"

    @property
    def proposals(self) -> Path:
        return self.runs / "offline/vild-proposals"


def build_ezsd_offline(parts: OfflineParts, data_root: Path, progress: bool) -> None:
    """The re-normalised CLIP and both region caches (each skipped when complete)."""
    checkpoint = parts.renorm / CHECKPOINT_NAME
    if not checkpoint.is_file():
        config_path = METHODS_DIR / "configs/renorm-synth-ovd.yaml"
        renormalise(RenormConfig.load(config_path), data_root, parts.renorm, config_path.parent, progress=progress)
    annotations = BoxAnnotations.load(data_root, "detection/instances_train.json")
    for kind, weights in (("renorm", str(checkpoint)), ("raw", RAW_CLIP)):
        clip = Clip("tiny-vit", pretrained=resolve_weights(weights))
        build_region_cache(clip, annotations, parts.regions(kind), REGION_SETTINGS, progress=progress)


def run_overrides(variant: Variant, parts: OfflineParts, iterations: int, seed: int) -> list[str]:
    """Everything the study sets on ``variant``'s config for one run."""
    out = [*STUDY_OVERRIDES, *schedule_overrides(variant.config, iterations), f"train.seed={seed}"]
    if variant.regions is not None:
        out += [f"method.regions={parts.regions(variant.regions).resolve()}"]
        if variant.regions == "renorm":
            out += [f"model.clip.pretrained={(parts.renorm / CHECKPOINT_NAME).resolve()}"]
    if variant.proposals:
        out += [f"method.proposals={parts.proposals.resolve()}"]
    return [*out, *variant.overrides]


def train_timed(variant: Variant, overrides: Sequence[str], data_root: Path, out: Path,
                progress: bool) -> tuple[Path, float | None]:
    """The run's ``model.pt`` and its training seconds (None when the model already existed; the
    seconds of an earlier run are kept in ``out/train_seconds.txt``)."""
    seconds_file = out / "train_seconds.txt"
    if (out / "model.pt").is_file():
        return out / "model.pt", float(seconds_file.read_text()) if seconds_file.is_file() else None
    run = load_detector_run_config(variant.config, overrides)
    start = time.perf_counter()
    model = train_detector(run, data_root, out, base_dir=variant.config.parent,
                           resume=(out / "last_checkpoint").is_file(), progress=progress)
    seconds = time.perf_counter() - start
    seconds_file.write_text(f"{seconds:.1f}\n")
    return model, seconds


def evaluate_run(model_path: Path, data_root: Path, predictions: Path, progress: bool
                 ) -> tuple[dict[str, Any], dict[str, Any], float]:
    """(metrics, record inputs, test images per second) of a detector file on ``synth-ovd`` val."""
    protocol = get_protocol(PROTOCOL_ID)
    detector = load_detector_file(model_path)
    done = predict_protocol_detection(detector, protocol, data_root, predictions, overwrite=True, progress=progress)
    result = evaluate_detection_submission(protocol, predictions, data_root, progress=progress)
    inputs = {"predictions": str(predictions), "predictions_sha256": result.predictions_sha256,
              "ground_truth_sha256": result.ground_truth_sha256, "num_images": result.num_images,
              "num_detections": result.num_detections}
    return dict(result.metrics), inputs, len(done.latencies_s) / max(sum(done.latencies_s), 1e-9)


def run_study(data_root: Path, runs: Path, root: Path, seeds: Sequence[int], iterations: int,
              only: Sequence[str] = (), study: str = "ezsd-vs-vild", progress: bool = True,
              schedules: Sequence[str] = tuple(SCHEDULES)) -> list[Path]:
    """Offline parts, then train, predict, evaluate and record every (seed, variant, schedule) of the
    ``only`` variants (default all) at the given ``schedules``."""
    unknown = sorted(set(only) - {v.name for v in VARIANTS})
    if unknown:
        raise OvbenchError(f"unknown variant(s) {unknown}; known: {[v.name for v in VARIANTS]}")
    if not set(schedules) <= set(SCHEDULES):
        raise OvbenchError(f"unknown schedule(s) {sorted(set(schedules) - set(SCHEDULES))}; known: {list(SCHEDULES)}")
    parts = OfflineParts(runs)
    if any(v.regions for v in VARIANTS if not only or v.name in only):
        build_ezsd_offline(parts, data_root, progress)
    protocol = get_protocol(PROTOCOL_ID)
    rows = [(variant, schedule) for variant in VARIANTS for schedule in variant.schedules]
    records = []
    for seed in seeds:                       # seeds outermost: an interrupted study has every row's first seeds
        for order, (variant, schedule) in enumerate(rows, start=1):
            if (only and variant.name not in only) or schedule not in schedules:
                continue
            if variant.proposals and not (parts.proposals / "manifest.json").is_file():
                build_vild_proposals(parts, data_root, runs, seeds[0], iterations, progress)
            fraction, label = SCHEDULES[schedule]
            name = f"{variant.name} ({label})"
            steps = max(1, round(iterations * fraction))
            out = runs / f"{slug(name)}-seed{seed}"
            overrides = run_overrides(variant, parts, steps, seed)
            model, seconds = train_timed(variant, overrides, data_root, out, progress)
            metrics, inputs, images_per_s = evaluate_run(model, data_root, out / "val.json", progress)
            config = {"study": {"name": study, "variant": name, "seed": seed, "order": order},
                      "model": str(model), "run_config": variant.config.relative_to(PACKAGES_DIR).as_posix(),
                      "overrides": overrides, "iterations": steps, "images_per_s": images_per_s}
            if seconds is not None:
                config["train_seconds"] = round(seconds, 1)
            record = reproduced_record(f"{study}/{slug(name)}/seed{seed}", protocol, metrics, inputs, config)
            records.append(write_record_with_per_image(root, record, None, None))
            box = metrics.get("bbox", {})
            print(f"{name} seed {seed}: box AP50@100 novel {box.get('AP50_novel@100', float('nan')):.1f} "
                  f"base {box.get('AP50_base@100', float('nan')):.1f}, trained in "
                  f"{'?' if seconds is None else f'{seconds:.0f}'} s", flush=True)
    build_leaderboards(root, root / "tables")
    return records


def build_vild_proposals(parts: OfflineParts, data_root: Path, runs: Path, seed: int, iterations: int,
                         progress: bool) -> None:
    """ViLD's proposal cache from the RPN of the seed-``seed`` full-schedule ViLD-text run (trained here
    when missing)."""
    text = VARIANTS[0]
    out = runs / f"{slug(f'{text.name} (full)')}-seed{seed}"
    model, _ = train_timed(text, run_overrides(text, parts, iterations, seed), data_root, out, progress)
    build_cache(model, data_root, parts.proposals, {"name": "tiny-vit", "pretrained": RAW_CLIP}, top=VILD_TOP,
                device="cpu", progress=progress)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m methods.ezsd.study", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, type=Path, help="the synthetic world (ovbench data synth --out DIR)")
    p.add_argument("--runs", required=True, type=Path, help="offline parts, training runs and predictions go here")
    p.add_argument("--root", type=Path, default=Path("leaderboards"), help="leaderboard root for the records")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=300, help="steps of the full schedule (¼ runs get a quarter)")
    p.add_argument("--only", nargs="+", default=[], metavar="VARIANT", help="run only these variants")
    p.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=list(SCHEDULES),
                   help="run only these schedules")
    p.add_argument("--study", default="ezsd-vs-vild", help="study name (the table's file name)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    run_study(args.data_root, args.runs, args.root, args.seeds, args.iterations, args.only, args.study,
              progress=not args.no_progress, schedules=args.schedules)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main, "python -m methods.ezsd.study"))
