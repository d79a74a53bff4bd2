"""``ovbench compare A.json B.json``: paired bootstrap test of the difference of two results."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ovbench.errors import OvbenchError
from ovbench.metrics.bootstrap import miou_metric, paired_bootstrap
from ovbench.protocols import get_protocol
from ovbench.records.result import load_per_image


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="paired bootstrap test between two evaluations of the same protocol")
    p.add_argument("a", type=Path, help="result JSON (from `evaluate --out` or a record)")
    p.add_argument("b", type=Path, help="result JSON of the other method, same protocol and images")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise OvbenchError(f"{path}: unreadable result JSON ({e}); pass a file from `ovbench evaluate --out`") from e


def _protocol_of(result: dict[str, Any]) -> tuple[str, str]:
    if isinstance(result.get("protocol"), dict):
        return result["protocol"]["id"], result["protocol"]["hash"]
    return result["protocol"], result["protocol_hash"]


def run(args: argparse.Namespace) -> int:
    ra, rb = _load(args.a), _load(args.b)
    (pid_a, hash_a), (pid_b, hash_b) = _protocol_of(ra), _protocol_of(rb)
    if (pid_a, hash_a) != (pid_b, hash_b):
        raise OvbenchError(f"{args.b}: protocol {pid_b}@{hash_b} differs from {args.a}'s {pid_a}@{hash_a}; "
                           f"compare results of the same protocol version")
    task = get_protocol(pid_a).task
    if task != "semseg":
        raise OvbenchError(f"{args.a}: a {task} result; `ovbench compare` tests semseg results (a paired "
                           f"bootstrap over per-image pixel statistics), which is all it supports so far")
    ids_a, stats_a = load_per_image(args.a, ra)
    ids_b, stats_b = load_per_image(args.b, rb)
    if sorted(ids_a) != sorted(ids_b):
        raise OvbenchError(f"{args.b}: evaluated on other images than {args.a}; a paired test needs the same images")
    order_b = {i: n for n, i in enumerate(ids_b)}
    stats_b = stats_b[np.asarray([order_b[i] for i in ids_a])]
    protocol = get_protocol(pid_a)
    metrics = {"mIoU": miou_metric(), "mIoU_novel": miou_metric(protocol.class_ids("novel")),
               "mIoU_base": miou_metric(protocol.class_ids("base"))}
    tests = {name: paired_bootstrap(stats_a, stats_b, fn, num_boot=args.bootstrap, seed=args.seed)
             for name, fn in metrics.items()}
    print(json.dumps({"protocol": pid_a, "protocol_hash": hash_a, "a": str(args.a), "b": str(args.b),
                      "method_a": ra.get("method"), "method_b": rb.get("method"),
                      "num_images": len(ids_a), "difference_a_minus_b": tests}, indent=2))
    return 0
