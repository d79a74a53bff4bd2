"""Collecting submission problems: grouped by kind, each with a count and the first few examples.

Checks of large submissions (hundreds of thousands of entries) report every kind of problem at
once without printing every offending entry: ``"12 entries have ... (e.g. entry 3: 91; ...)"``.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

#: How many offending entries or items each problem line names.
EXAMPLES = 5


def is_int(v: Any) -> bool:
    """A JSON integer (``bool`` is not one)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite JSON number (``bool`` is not one)."""
    try:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    except OverflowError:          # a JSON integer beyond float range
        return False


class Problems:
    """Problems grouped by kind, each with a count and the first :data:`EXAMPLES` examples."""

    def __init__(self) -> None:
        self._examples: dict[str, list[str]] = defaultdict(list)
        self._counts: Counter = Counter()

    def add(self, kind: str, example: str, count: int = 1) -> None:
        self._counts[kind] += count
        if len(self._examples[kind]) < EXAMPLES:
            self._examples[kind].append(example)

    def lines(self) -> list[str]:
        """One line per kind, in the order kinds were first seen."""
        return [f"{self._counts[k]} {k} (e.g. {'; '.join(self._examples[k])})" for k in self._counts]
