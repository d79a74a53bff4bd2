"""``ovbench leaderboard`` and ``ovbench import-reported``: tables and plots from records."""
from __future__ import annotations

import argparse
from pathlib import Path

from ovbench.leaderboard import build_leaderboards
from ovbench.records.reported import import_reported_table

DEFAULT_ROOT = Path("leaderboards")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="build Markdown/CSV/LaTeX/HTML tables and plots from result records")
    p.add_argument("--protocol", help="only this protocol")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder with results/ and speed/ (default: leaderboards)")
    p.add_argument("--out", type=Path, help="where tables go (default: <root>/tables)")
    p.add_argument("--data-root", type=Path, help="lets rows of protocols whose class table comes from the "
                                                  "dataset (ADE-847, PC-459, LVIS) be checked for staleness")
    p.set_defaults(func=run_leaderboard)

    p = sub.add_parser("import-reported", help="turn a transcribed paper table into `reported` records")
    p.add_argument("table", type=Path, help="reported-table JSON (see leaderboards/reported/)")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="leaderboard root (default: leaderboards)")
    p.set_defaults(func=run_import)


def run_leaderboard(args: argparse.Namespace) -> int:
    report = build_leaderboards(args.root, args.out or args.root / "tables", protocol=args.protocol,
                                data_root=args.data_root)
    print(report.summary())
    return 0


def run_import(args: argparse.Namespace) -> int:
    written = import_reported_table(args.table, args.root)
    print(f"{len(written)} reported record(s) written under {args.root / 'results'}")
    return 0
