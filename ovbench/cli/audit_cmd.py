"""``ovbench audit``: the leakage audit of a test protocol's classes against a training vocabulary.

Writes ``<out>/<test>__vs__<train>.md`` and ``.json`` (see :mod:`ovbench.protocols.audit`) and prints
the counts; exits 1 when the test protocol's stored partitions differ from the overlap rule.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ovbench.protocols import get_protocol
from ovbench.protocols.audit import audit
from ovbench.records.store import atomic_write_json, atomic_write_text

DEFAULT_OUT = Path("leaderboards/audits")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="leakage audit: which test classes the training vocabulary shares by name, "
                                     "synonym or WordNet synset, and which are truly unseen")
    p.add_argument("--train", required=True, metavar="TRAIN_PROTOCOL", help="protocol whose classes were trained on")
    p.add_argument("--test", required=True, metavar="TEST_PROTOCOL", help="protocol whose classes are audited")
    p.add_argument("--data-root", type=Path,
                   help="data root holding dataset-sourced class tables (ADE-847, PC-459, LVIS)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for the tables (default: {DEFAULT_OUT})")
    p.set_defaults(func=run)


def audit_paths(out: Path, test: str, train: str) -> tuple[Path, Path]:
    """The Markdown and JSON files of one audit."""
    stem = out / f"{test}__vs__{train}"
    return stem.with_suffix(".md"), stem.with_suffix(".json")


def run(args: argparse.Namespace) -> int:
    result = audit(get_protocol(args.test, args.data_root), get_protocol(args.train, args.data_root))
    md_path, json_path = audit_paths(args.out, args.test, args.train)
    atomic_write_json(json_path, result.to_json())
    atomic_write_text(md_path, result.to_markdown())
    print(result.summary())
    print(f"  written: {md_path}, {json_path}")
    bad = result.partition_mismatches
    if bad:
        print(f"  stored partition differs from the overlap rule for: {', '.join(f'{r.id} {r.name}' for r in bad)}; "
              f"run `python -m ovbench.protocols.build_partitions`")
        return 1
    return 0
