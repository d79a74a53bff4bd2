"""Reading dataset JSON with one-line errors that name the file; writing it atomically."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from ovbench.errors import OvbenchError
from ovbench.records.store import atomic_write_text


def read_json_object(path: Path, list_keys: Sequence[str], what: str, fix: str) -> dict[str, Any]:
    """The JSON object in ``path``, which must hold a list under each of ``list_keys``.

    ``what`` names the expected file (``"the COCO 2017 instances file"``) and ``fix`` says how
    to get a good one; both go into the one-line :class:`OvbenchError` raised otherwise.
    """
    try:
        doc = json.loads(path.read_bytes())
    except OSError as e:
        raise OvbenchError(f"{path}: cannot read it ({e.strerror or e}); {fix}") from e
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise OvbenchError(f"{path}: corrupt JSON ({e}); {fix}") from e
    if not isinstance(doc, dict):
        raise OvbenchError(f"{path}: not {what} (the top level is not a JSON object); {fix}")
    missing = [k for k in list_keys if not isinstance(doc.get(k), list)]
    if missing:
        raise OvbenchError(f"{path}: not {what} (no list {', '.join(map(repr, missing))}); {fix}")
    return doc


def write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    """Write ``obj`` as JSON, compact unless ``indent`` is given (instance files run to hundreds
    of MB), via a temporary file in the same folder renamed into place. Same object, same bytes.
    """
    separators = (",", ": ") if indent is not None else (",", ":")
    atomic_write_text(path, json.dumps(obj, indent=indent, separators=separators, allow_nan=False) + "\n")
