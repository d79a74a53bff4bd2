"""``ovbench train CONFIG``: train a segmenter from a run config (see
:mod:`ovbench.engine.segmenter_training`), or a detector when ``model.kind`` is ``detector`` (see
:mod:`ovbench.engine.detector_training`); under ``torchrun`` it trains data-parallel."""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a segmenter or detector from a config (writes OUTPUT/model.pt)")
    p.add_argument("config", type=Path, help="run config (YAML/JSON with sections name, model, data, train)")
    p.add_argument("--data-root", required=True, type=Path, help="folder holding the training split")
    p.add_argument("--output-dir", required=True, type=Path,
                   help="checkpoints, metrics.jsonl, config.yaml and the final model.pt go here")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", dest="overrides",
                   help="override a config value, parsed as YAML (repeatable), e.g. train.iterations=100")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT's last checkpoint")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovbench.engine.distributed import cleanup, init_distributed
    from ovbench.engine.detector_training import is_detector_config, load_detector_run_config, train_detector
    from ovbench.engine.segmenter_training import load_run_config, train_segmenter

    if is_detector_config(args.config):
        config, train = load_detector_run_config(args.config, args.overrides), train_detector
    else:
        config, train = load_run_config(args.config, args.overrides), train_segmenter
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        init_distributed()
    try:
        model = train(config, args.data_root, args.output_dir, base_dir=args.config.parent,
                      resume=args.resume, progress=not args.no_progress)
    finally:
        if distributed:
            cleanup()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"model: {model}")
    return 0
