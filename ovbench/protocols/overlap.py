"""Vocabulary overlap between a test protocol and a training vocabulary.

For cross-dataset protocols (train on COCO, test elsewhere) a test class is *base* when its name
or one of its synonyms equals, after normalisation, a name or synonym of some training class;
otherwise it is *novel*. The partition stored in each cross-dataset protocol file is this rule's
output; a test keeps the two in step. The leakage audit (:mod:`ovbench.protocols.audit`) splits
these matches into name and synonym levels and adds shared WordNet synsets.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

from ovbench.protocols.schema import ClassInfo


def normalise_name(name: str) -> str:
    """Lower-case, ``_``/``-``/``,`` to spaces, collapse white space: ``"Wine_Glass"`` -> ``"wine glass"``."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-,]", " ", name.lower())).strip()


def vocabulary_index(classes: Iterable[ClassInfo]) -> dict[str, list[int]]:
    """Normalised name -> ids of the classes that carry it (as name or synonym)."""
    index: dict[str, list[int]] = {}
    for c in classes:
        for n in {normalise_name(x) for x in c.names}:
            index.setdefault(n, []).append(c.id)
    return index


def overlap_table(test: Sequence[ClassInfo], train: Sequence[ClassInfo]) -> list[dict]:
    """One row per test class: its id, name, the shared names and the training classes they hit.

    ``partition`` is ``"base"`` when anything is shared, else ``"novel"``.
    """
    index = vocabulary_index(train)
    train_names = {c.id: c.name for c in train}
    rows = []
    for c in test:
        shared = sorted({n for n in (normalise_name(x) for x in c.names) if n in index})
        hit_ids = sorted({i for n in shared for i in index[n]})
        rows.append({"id": c.id, "name": c.name, "shared_names": shared,
                     "train_classes": [train_names[i] for i in hit_ids],
                     "partition": "base" if shared else "novel"})
    return rows
