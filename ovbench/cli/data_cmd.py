"""``ovbench data``: generate the synthetic world (real-dataset preparation comes with its own issue)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ovbench.synth import generate_world


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="datasets: generate the synthetic open-vocabulary world")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    s = data_sub.add_parser("synth", help="generate the synthetic OV world (images, videos, detection, captions)")
    s.add_argument("--out", type=Path, required=True, help="output folder (pass it as --data-root later)")
    s.add_argument("--seed", type=int, default=0, help="world seed (same seed, same bytes)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    summary = generate_world(args.out, seed=args.seed, progress=not args.no_progress)
    print(f"synthetic world (seed {args.seed}) written to {args.out} in {time.perf_counter() - start:.1f} s")
    counts = summary.get("counts", {})
    for key in ("images", "videos", "video_frames", "instances", "caption_pairs"):
        if key in counts:
            print(f"  {key}: {counts[key]}")
    return 0
