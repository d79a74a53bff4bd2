"""``ovbench demo``: the main job end to end on the embedded synthetic world."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate the synthetic world, predict, evaluate, record, build the leaderboards "
                                    "(synth-ov segmentation, synth-ovd detection)")
    p.add_argument("--workdir", type=Path, default=Path("demo-out"), help="where everything goes (default: demo-out)")
    p.add_argument("--root", type=Path, help="leaderboard root for the records (default: <workdir>/leaderboards)")
    p.add_argument("--seed", type=int, default=0, help="world seed")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only this row (repeatable): pixel-colour, pixel-texture, naive-finetune, two-stage, "
                        "maskclip, gkc (synth-ov); texture-boxes, texture-boxes+clip (synth-ovd detection)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovbench.demo import run_demo  # pulls in the models: only when the demo runs

    run_demo(args.workdir, root=args.root, seed=args.seed, bootstrap=args.bootstrap, progress=not args.no_progress,
             only=args.only)
    return 0
