"""``ovbench benchmark``: one model over a suite of semseg protocols — predict, evaluate, record each
(see :mod:`ovbench.inference.benchmark`)."""
from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_ROOT = Path("leaderboards")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="predict, evaluate and record one model on several protocols")
    p.add_argument("--model", required=True, type=Path, help="a model.pt from `ovbench train` or a model config")
    p.add_argument("--suite", help="a named protocol list (gkc-zero-shot: GKC's Table 1; synth)")
    p.add_argument("--protocol", action="append", default=[], help="a protocol id (repeatable; after --suite's)")
    p.add_argument("--data-root", required=True, type=Path, help="folder holding the protocols' data")
    p.add_argument("--out", required=True, type=Path, help="predictions go to OUT/<protocol>/")
    p.add_argument("--record", action="store_true", help="write a result record per protocol under --root")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="leaderboard root (default: leaderboards)")
    p.add_argument("--skip-missing", action="store_true", help="run the protocols whose data is present, "
                                                               "list the others")
    p.add_argument("--names", choices=("canonical", "synonyms"), default="canonical",
                   help="class names given to the model (default canonical)")
    p.add_argument("--device", default="cpu", help="torch device for segmenter model files (default cpu)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovbench.inference.benchmark import run_benchmark, suite_protocols
    from ovbench.models.zoo import load_model

    protocols = suite_protocols(args.suite, args.protocol)
    model = load_model(args.model, device=args.device)
    rows, skipped = run_benchmark(model, protocols, args.data_root, args.out, args.root if args.record else None,
                                  {"model": str(args.model), "suite": args.suite}, skip_missing=args.skip_missing,
                                  names=args.names, progress=not args.no_progress)
    print(f"{'protocol':22s} {'mIoU':>6s} {'base':>6s} {'novel':>6s} {'hIoU':>6s} {'img/s':>7s}")
    for row in rows:
        m = row.metrics
        cells = [m.get(k) for k in ("mIoU", "mIoU_base", "mIoU_novel", "hIoU")]
        text = " ".join(f"{v:6.1f}" if isinstance(v, (int, float)) else f"{'-':>6s}" for v in cells)
        print(f"{row.protocol:22s} {text} {row.images_per_s:7.1f}" + (f"  {row.record}" if row.record else ""))
    for pid, why in skipped.items():
        print(f"{pid:22s} skipped: {why}")
    return 0
