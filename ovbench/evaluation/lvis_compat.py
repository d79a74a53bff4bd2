"""The one compatibility adapter for the official LVIS API (``lvis`` 0.5.3) under NumPy 2.

``lvis.eval.LVISEval.accumulate`` casts with NumPy's ``float`` alias, which NumPy 1.24 removed, so with
NumPy 2 it raises ``AttributeError`` (lvis-api issue #37, unfixed in the last release). The
reference LVIS backend runs the API's calls inside :func:`numpy_aliases`, which puts the removed
aliases back on the ``numpy`` module for the duration of the call and takes them away again
afterwards, so no other code ever sees them. The aliases meant the Python builtins, which is
exactly what is restored.

Not thread-safe: the aliases are visible to other threads while a call runs. ovbench runs its
reference backends in one thread.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

#: Aliases removed in NumPy 1.24 that lvis 0.5.3 uses, with what they always meant.
REMOVED_ALIASES = {"float": float, "int": int, "bool": bool, "object": object}


@contextmanager
def numpy_aliases() -> Iterator[None]:
    """Restore NumPy's removed builtin aliases only while the ``with`` block runs."""
    added = []
    for name, value in REMOVED_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)
            added.append(name)
    try:
        yield
    finally:
        for name in added:
            delattr(np, name)
