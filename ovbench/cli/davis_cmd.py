"""``ovbench evaluate-davis``: DAVIS 2017 J&F of a prediction folder against a ground-truth folder.

Prints the global table. With ``--out DIR`` it also writes, atomically, the reference's
``global_results-<task>.csv`` and ``per-sequence_results-<task>.csv`` (same columns, ``%.3f``) and
``results.json`` (full precision, per-frame scores). Those three files are removed before the
evaluation starts, so a failed run never leaves earlier results behind; nothing is ever read back.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from ovbench.errors import OvbenchError
from ovbench.evaluation.davis import GLOBAL_COLUMNS, TASKS, DavisResult, evaluate_davis
from ovbench.records.store import atomic_write_json, atomic_write_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate-davis", help="DAVIS 2017 J&F of <pred>/<sequence>/<frame>.png against a GT folder")
    p.add_argument("--gt", required=True, type=Path, help="ground truth: <sequence>/<frame>.png, pixel = object id")
    p.add_argument("--pred", required=True, type=Path, help="predictions in the same layout")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                   help="processes, one sequence per task (default: CPUs, at most 8)")
    p.add_argument("--out", type=Path, help="write the reference's two CSV files and results.json here")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def output_names(task: str) -> tuple[str, str, str]:
    """File names written by ``--out``: global CSV, per-sequence CSV, JSON."""
    return f"global_results-{task}.csv", f"per-sequence_results-{task}.csv", "results.json"


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.3f}"  # pandas writes NaN as an empty field


def _csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def global_csv(result: DavisResult) -> str:
    """The reference's ``global_results-<set>.csv``: a header and one row, ``%.3f``."""
    metrics = result.global_metrics()
    return _csv([list(GLOBAL_COLUMNS), [_number(metrics[c]) for c in GLOBAL_COLUMNS]])


def per_sequence_csv(result: DavisResult) -> str:
    """The reference's ``per-sequence_results-<set>.csv``: ``Sequence,J-Mean,F-Mean`` per object."""
    rows = [["Sequence", "J-Mean", "F-Mean"]]
    for obj in result.objects:
        stats = obj.stats()
        rows.append([obj.name, _number(stats["J"]["mean"]), _number(stats["F"]["mean"])])
    return _csv(rows)


def result_json(result: DavisResult, gt: Path, pred: Path) -> dict[str, Any]:
    """Everything at full precision: global table, per-object statistics and per-frame J and F."""
    objects = []
    for obj in result.objects:
        entry: dict[str, Any] = {"name": obj.name, "sequence": obj.sequence, "object_id": obj.object_id,
                                 **obj.stats(), "J_per_frame": obj.j.tolist(), "F_per_frame": obj.f.tolist()}
        if result.task == "unsupervised":
            entry["proposal"] = obj.proposal
        objects.append(entry)
    return {"task": result.task, "ground_truth": str(gt), "predictions": str(pred),
            "global": result.global_metrics(), "frames": result.frames, "objects": objects}


def format_table(result: DavisResult) -> str:
    metrics = result.global_metrics()
    widths = [max(len(c), 6) for c in GLOBAL_COLUMNS]
    head = "  ".join(c.rjust(w) for c, w in zip(GLOBAL_COLUMNS, widths))
    row = "  ".join(f"{metrics[c]:.3f}".rjust(w) for c, w in zip(GLOBAL_COLUMNS, widths))
    frames = sum(len(f) for f in result.frames.values())
    return (f"DAVIS {result.task}: {len(result.frames)} sequences, {len(result.objects)} objects, "
            f"{frames} scored frames\n{head}\n{row}")


def run(args: argparse.Namespace) -> int:
    names = output_names(args.task)
    if args.out and args.out.exists() and not args.out.is_dir():
        raise OvbenchError(f"--out {args.out} is a file; give a folder")
    if args.out:
        for name in names:
            (args.out / name).unlink(missing_ok=True)
    result = evaluate_davis(args.gt, args.pred, args.task, workers=args.workers, progress=not args.no_progress)
    print(format_table(result))
    if args.out:
        atomic_write_text(args.out / names[0], global_csv(result))
        atomic_write_text(args.out / names[1], per_sequence_csv(result))
        atomic_write_json(args.out / names[2], result_json(result, args.gt, args.pred))
        print(f"wrote {', '.join(str(args.out / n) for n in names)}")
    return 0
