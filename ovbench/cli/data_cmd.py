"""``ovbench data``: generate the synthetic world (``synth``), prepare a real dataset's files (``prepare``),
check the prepared files (``check``).

``ovbench data prepare NAME --root DIR`` turns the official files of dataset NAME found below DIR
into the files its protocols read (see :mod:`ovbench.prepare`); it downloads nothing and says
which files are missing and where to get them. ``ovbench data check [PROTOCOL ...] --data-root DIR``
says, per protocol, whether those files are there and sane (see :mod:`ovbench.prepare.check`).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ovbench.prepare import PREPARERS, Preparer, prepare
from ovbench.prepare.check import ABSENT, FAIL, SAMPLE, ProtocolCheck, check_data
from ovbench.synth import generate_world
from ovbench.synth.pretrain_clip import PretrainConfig, pretrain_tiny_clip

DEFAULT_CLIP_WEIGHTS = Path("ovbench/models/weights/tiny-vit-synth.pt")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="datasets: generate the synthetic open-vocabulary world, or prepare a real "
                                    "dataset's files (coco-ovd, lvis, ...)")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    s = data_sub.add_parser("synth", help="generate the synthetic OV world (images, videos, detection, captions)")
    s.add_argument("--out", type=Path, required=True, help="output folder (pass it as --data-root later)")
    s.add_argument("--seed", type=int, default=0, help="world seed (same seed, same bytes)")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=run_synth)

    names = sorted(PREPARERS)
    r = data_sub.add_parser(
        "prepare", help="prepare a real dataset's files for its protocols (downloads nothing)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Turn a dataset's official files below --root into the files its protocols read.\n\n"
                    + "\n".join(_describe(PREPARERS[n]) for n in names))
    r.add_argument("name", choices=names, metavar="NAME", help=f"dataset: {', '.join(names)}")
    r.add_argument("--root", type=Path, required=True,
                   help="data root holding the official files (pass it as --data-root later)")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=run_prepare)

    k = data_sub.add_parser(
        "check", help="check that the prepared files of protocols are there and sane; lists what is missing "
                      "and the command that writes it")
    k.add_argument("protocols", nargs="*", metavar="PROTOCOL",
                   help="protocol ids (default: every protocol whose data folder is below --data-root)")
    k.add_argument("--data-root", type=Path, required=True, help="the data root the protocols read")
    k.add_argument("--full", action="store_true",
                   help=f"decode every label map / check every image file (default: {SAMPLE} per protocol)")
    k.add_argument("--no-progress", action="store_true")
    k.set_defaults(func=run_check)

    c = data_sub.add_parser("pretrain-clip", help="train the tiny CLIP on the synthetic world's image-caption pairs")
    c.add_argument("--world", type=Path, required=True, help="folder written by `ovbench data synth`")
    c.add_argument("--out", type=Path, default=DEFAULT_CLIP_WEIGHTS,
                   help=f"weights file; the report goes beside it as .json (default: {DEFAULT_CLIP_WEIGHTS})")
    c.add_argument("--epochs", type=int, default=PretrainConfig.epochs)
    c.add_argument("--batch-size", type=int, default=PretrainConfig.batch_size)
    c.add_argument("--lr", type=float, default=PretrainConfig.lr)
    c.add_argument("--seed", type=int, default=PretrainConfig.seed)
    c.add_argument("--threads", type=int, default=PretrainConfig.threads, help="torch CPU threads")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=run_pretrain_clip)


def _describe(preparer: Preparer) -> str:
    return (f"{preparer.name}: {preparer.help}\n"
            f"  reads:  {', '.join(f.path for f in preparer.inputs)}\n"
            f"  writes: {', '.join(preparer.outputs)}")


def run_synth(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    summary = generate_world(args.out, seed=args.seed, progress=not args.no_progress)
    print(f"synthetic world (seed {args.seed}) written to {args.out} in {time.perf_counter() - start:.1f} s")
    counts = summary.get("counts", {})
    for key in ("images", "videos", "video_frames", "instances", "caption_pairs"):
        if key in counts:
            print(f"  {key}: {counts[key]}")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    report = prepare(args.name, args.root, progress=not args.no_progress)
    print(f"prepared {report.name} under {report.root} in {time.perf_counter() - start:.1f} s")
    for f in report.files:
        print(f"  {f.action} {f.path}: {', '.join(f'{k} {v}' for k, v in f.counts.items())}")
    for note in report.notes:
        print(f"  note: {note}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """One line per protocol, then each failing protocol's problems and fix; 1 if any fails or none is found."""
    results = check_data(args.protocols, args.data_root, full=args.full, progress=not args.no_progress)
    width = max(len(r.protocol) for r in results)
    for r in results:
        print(f"{r.protocol:<{width}}  {r.status:<6}  {r.summary}" + (f"; {len(r.problems)} problem(s)"
                                                                     if r.problems else ""))
    failed = [r for r in results if r.status == FAIL]
    for r in failed:
        _print_problems(r)
    if all(r.status == ABSENT for r in results):
        print(f"no protocol's data folder is below {args.data_root}; pass the folder given to "
              f"`ovbench data prepare --root` or `ovbench data synth --out`")
        return 1
    return 1 if failed else 0


def _print_problems(result: ProtocolCheck, shown: int = 20) -> None:
    print(f"\n{result.protocol}: {len(result.problems)} problem(s)")
    for problem in result.problems[:shown]:
        print(f"  - {problem}")
    if len(result.problems) > shown:
        print(f"  ... and {len(result.problems) - shown} more")
    print(f"  fix: {result.fix}")


def run_pretrain_clip(args: argparse.Namespace) -> int:
    config = PretrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            threads=args.threads, progress=not args.no_progress)
    result = pretrain_tiny_clip(args.world, args.out, config)
    zs = result.report["zero_shot"]
    print(f"tiny CLIP trained in {result.report['train_seconds']:.0f} s: {result.weights} (report {result.report_path})")
    shown = ", ".join(f"{k} {'-' if zs[k] is None else format(zs[k], '.3f')}" for k in ("base", "novel", "chance"))
    print(f"  zero-shot top-1 on val crops: {shown}")
    return 0
