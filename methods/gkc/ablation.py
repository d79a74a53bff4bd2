"""GKC's ablation on the synthetic world (issue 6): naive fine-tune, + text diversification, + TGKD,
GKC (both), and the two-stage baseline, each over several seeds, recorded as one study.

``python -m methods.gkc.ablation --data-root WORLD --runs DIR [--seeds 0 1 2] [--root leaderboards]
[--set train.iterations=1000 ...]`` trains what is missing (a run whose ``model.pt`` exists is
reused; an interrupted one resumes from its last checkpoint), predicts ``synth-ov`` val, evaluates
and writes one result record per (variant, seed) with ``config.study`` (see
:mod:`ovbench.leaderboard.studies`), then rebuilds the leaderboard: ``<root>/tables/synth-ov__<study>.md``
holds mean ± std over seeds. The GKC variants include GKC's region dropout (0.5); the naive
fine-tune has none. The two-stage baseline uses each seed's naive model as its proposer.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import baselines
from ovbench.cli import run_script
from ovbench.engine.segmenter_training import load_run_config, train_segmenter
from ovbench.inference.benchmark import evaluate_model
from ovbench.leaderboard import build_leaderboards
from ovbench.models.zoo import build_model, load_model, read_model_config
from ovbench.protocols import get_protocol

METHODS_DIR = Path(__file__).resolve().parent
BASELINES_DIR = Path(baselines.__file__).resolve().parent
PROTOCOL_ID = "synth-ov"


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: a run config plus overrides (``config`` None: the two-stage baseline)."""

    name: str
    config: Path | None
    overrides: tuple[str, ...] = ()


VARIANTS = (
    Variant("naive fine-tune", BASELINES_DIR / "naive_finetune/configs/synth-ov.yaml"),
    Variant("+ text diversification", METHODS_DIR / "configs/synth-ov.yaml", ("method.kd_weight=0",)),
    Variant("+ TGKD", METHODS_DIR / "configs/synth-ov.yaml", ("method.syn_weight=0",)),
    Variant("GKC (both)", METHODS_DIR / "configs/synth-ov.yaml"),
    Variant("two-stage CLIP per mask", None),
)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def train_variant(variant: Variant, seed: int, data_root: Path, runs: Path, overrides: Sequence[str],
                  progress: bool) -> Path:
    """The variant's ``model.pt`` for ``seed``, trained (or resumed) when missing."""
    out = runs / f"{_slug(variant.name)}-seed{seed}"
    if (out / "model.pt").is_file():
        return out / "model.pt"
    run = load_run_config(variant.config, [*variant.overrides, *overrides, f"train.seed={seed}"])
    return train_segmenter(run, data_root, out, base_dir=variant.config.parent,
                           resume=(out / "last_checkpoint").is_file(), progress=progress)


def run_ablation(data_root: Path, runs: Path, root: Path, seeds: Sequence[int], overrides: Sequence[str] = (),
                 study: str = "gkc-ablation", progress: bool = True) -> list[Path]:
    """Train, predict, evaluate and record every (variant, seed); returns the record paths."""
    protocol = get_protocol(PROTOCOL_ID)
    records = []
    for seed in seeds:
        naive = None
        for order, variant in enumerate(VARIANTS):
            if variant.config is not None:
                path = train_variant(variant, seed, data_root, runs, overrides, progress)
                naive = naive or path
                model = load_model(path)
                source = {"model": str(path), "run_config": str(variant.config),
                          "overrides": [*variant.overrides, *overrides, f"train.seed={seed}"]}
            else:
                config = read_model_config(BASELINES_DIR / "two_stage/configs/synth-ov.yaml")
                config["proposer"] = {"kind": "segmenter", "checkpoint": str(naive)}
                model = build_model(config, BASELINES_DIR / "two_stage/configs")
                source = {"model": "baselines/two_stage/configs/synth-ov.yaml", "proposer": str(naive)}
            pred = runs / "predictions" / f"{_slug(variant.name)}-seed{seed}"
            config = {"study": {"name": study, "variant": variant.name, "seed": seed, "order": order}, **source}
            row = evaluate_model(model, protocol, data_root, pred, f"{study}/{_slug(variant.name)}/seed{seed}",
                                 config, root, progress=progress)
            records.append(row.record)
            m = row.metrics
            print(f"{variant.name} seed {seed}: mIoU {m['mIoU']:.1f} base {m['mIoU_base']:.1f} "
                  f"novel {m['mIoU_novel']:.1f} hIoU {m['hIoU']:.1f}, {row.images_per_s:.1f} img/s")
    build_leaderboards(root, root / "tables")
    return records


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m methods.gkc.ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, type=Path, help="the synthetic world (ovbench data synth --out DIR)")
    p.add_argument("--runs", required=True, type=Path, help="training runs and predictions go here")
    p.add_argument("--root", type=Path, default=Path("leaderboards"), help="leaderboard root for the records")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--study", default="gkc-ablation", help="study name (the table's file name)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="SECTION.KEY=VALUE",
                   help="override every trained variant's config (e.g. train.iterations=1000)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    run_ablation(args.data_root, args.runs, args.root, args.seeds, args.overrides, args.study,
                 progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main, "python -m methods.gkc.ablation"))
