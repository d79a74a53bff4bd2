"""Recompute the stored base/novel partition of every overlap-rule protocol.

A cross-dataset protocol (``partition_rule.kind == "overlap"``) stores, for each class, the
partition that :func:`ovbench.protocols.overlap.overlap_table` gives against its training
protocol's vocabulary. After editing names or synonyms (of the test protocol or of the training
one), run::

    python -m ovbench.protocols.build_partitions           # rewrite the files in place
    python -m ovbench.protocols.build_partitions --check   # exit 1 if any file is out of date
    python -m ovbench.protocols.build_partitions --explain ade-150   # why each class is base

Only the ``partition`` fields change; files are rewritten as ``json.dumps(indent=1)``. Protocols
whose class table comes from the dataset (ADE-847, PC-459) have no stored classes; the registry
applies the same rule when it loads their table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from ovbench.errors import OvbenchError
from ovbench.protocols.overlap import overlap_table
from ovbench.protocols.schema import ClassInfo, protocol_from_dict

DEFS_DIR = Path(__file__).parent / "defs"


def _load_defs(defs_dir: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    defs: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in sorted(defs_dir.glob("*.json")):
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise OvbenchError(f"{path}: cannot read protocol definition ({e}); fix the JSON") from e
        defs[d["id"]] = (path, d)
    return defs


def _classes(d: dict[str, Any], where: str) -> tuple[ClassInfo, ...]:
    return protocol_from_dict(d, where=where).require_classes()


def recompute(defs_dir: Path = DEFS_DIR) -> list[dict[str, Any]]:
    """One result per overlap-rule protocol with stored classes.

    Each result has ``id``, ``path``, ``definition`` (with partitions recomputed), ``rows`` (the
    overlap table), ``changed`` (ids of classes whose partition moved) and ``text`` (the new file).
    """
    defs = _load_defs(defs_dir)
    results = []
    for pid, (path, d) in defs.items():
        rule = d.get("partition_rule", {})
        if rule.get("kind") != "overlap" or "classes" not in d:
            continue
        train_id = rule.get("train_protocol")
        if train_id not in defs:
            raise OvbenchError(f"{path}: partition_rule.train_protocol {train_id!r} is not a protocol in {defs_dir}")
        train_path, train_def = defs[train_id]
        rows = overlap_table(_classes(d, str(path)), _classes(train_def, str(train_path)))
        changed = []
        for c, row in zip(d["classes"], rows):
            if c.get("partition") != row["partition"]:
                changed.append(c["id"])
                c["partition"] = row["partition"]
        results.append({"id": pid, "path": path, "definition": d, "rows": rows, "changed": changed,
                        "text": json.dumps(d, indent=1) + "\n"})
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ovbench.protocols.build_partitions", description=__doc__.split("\n")[0])
    ap.add_argument("--defs", type=Path, default=DEFS_DIR, help="protocol definitions folder (default: the package's)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a stored partition is out of date")
    ap.add_argument("--explain", metavar="PROTOCOL", help="print each class's shared names and training classes")
    args = ap.parse_args(argv)
    try:
        results = recompute(args.defs)
    except OvbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stale = False
    for r in results:
        n_base = sum(row["partition"] == "base" for row in r["rows"])
        n_novel = len(r["rows"]) - n_base
        on_disk = r["path"].read_text()
        status = "up to date" if on_disk == r["text"] else (f"{len(r['changed'])} partition(s) changed"
                                                             if r["changed"] else "reformatted")
        if on_disk != r["text"]:
            stale = True
            if not args.check:
                r["path"].write_text(r["text"])
        print(f"{r['id']}: {n_base} base, {n_novel} novel ({status})")
        if args.explain == r["id"]:
            for row in r["rows"]:
                via = f" via {', '.join(row['shared_names'])} -> {', '.join(row['train_classes'])}" if row["shared_names"] else ""
                print(f"  {row['id']:4d} {row['name']}: {row['partition']}{via}")
    if args.explain and args.explain not in {r["id"] for r in results}:
        print(f"error: {args.explain!r} is not an overlap-rule protocol with stored classes", file=sys.stderr)
        return 2
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    raise SystemExit(main())
