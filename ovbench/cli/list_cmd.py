"""``ovbench list``: the registered protocols, or one protocol's class table."""
from __future__ import annotations

import argparse
import json

from ovbench.errors import OvbenchError
from ovbench.protocols import get_protocol, protocol_ids
from ovbench.protocols.overlap import overlap_table
from ovbench.protocols.schema import TASKS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list protocols (or one protocol's classes)")
    p.add_argument("--task", choices=TASKS, help="only protocols of this task")
    p.add_argument("--json", action="store_true", help="print JSON (keys: id, task, num_classes, num_base, "
                                                       "num_novel, version, hash)")
    p.add_argument("--protocol", help="one protocol id")
    p.add_argument("--classes", action="store_true", help="with --protocol: print its class table and, for "
                                                          "cross-dataset protocols, the vocabulary overlap")
    p.add_argument("--data-root", help="for protocols whose class table comes from the dataset (ADE-847, PC-459)")
    p.set_defaults(func=run)


def _fmt(value: object) -> str:
    return "-" if value is None else str(value)


def run(args: argparse.Namespace) -> int:
    if args.classes:
        if not args.protocol:
            raise OvbenchError("--classes needs --protocol ID")
        return _print_classes(args)
    ids = [args.protocol] if args.protocol else protocol_ids(args.task)
    summaries = [get_protocol(i).summary() for i in ids]
    if args.json:
        print(json.dumps(summaries, indent=2))
        return 0
    header = ("id", "task", "num_classes", "num_base", "num_novel", "version", "hash")
    rows = [tuple(_fmt(s[k]) for k in header) for s in summaries]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    for line in (header, *rows):
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())
    return 0


def _print_classes(args: argparse.Namespace) -> int:
    p = get_protocol(args.protocol, data_root=args.data_root)
    classes = p.require_classes()
    rule = p.partition_rule
    overlap = None
    if rule.get("kind") == "overlap":
        overlap = {r["id"]: r for r in overlap_table(classes, get_protocol(rule["train_protocol"]).require_classes())}
    if args.json:
        rows = [{**c.to_dict(), **({"shared_names": overlap[c.id]["shared_names"],
                                    "train_classes": overlap[c.id]["train_classes"]} if overlap else {})}
                for c in classes]
        print(json.dumps({"protocol": p.id, "hash": p.hash, "partition_rule": dict(rule), "classes": rows}, indent=2))
        return 0
    print(f"{p.id} v{p.version} ({p.hash}): {p.title}")
    print(f"partition: {rule.get('kind')}" + (f" with {rule['train_protocol']}" if overlap else "")
          + f"; {p.num_base} base, {p.num_novel} novel")
    for c in classes:
        line = f"{c.id:>4}  {c.partition:<5}  {c.name}"
        if c.synonyms:
            line += f"  ({', '.join(c.synonyms)})"
        if overlap and overlap[c.id]["train_classes"]:
            line += f"  <- shares {', '.join(overlap[c.id]['shared_names'])} with " \
                    f"{', '.join(overlap[c.id]['train_classes'])}"
        print(line)
    return 0
