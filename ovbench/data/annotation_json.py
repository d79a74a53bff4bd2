"""Reading a protocol's ground-truth JSON (COCO, LVIS or YouTube-VIS) with errors naming the file and the fix."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from ovbench.errors import OvbenchError


def read_annotation_json(path: Path, keys: Sequence[str], kind: str, layout: str, owner: str,
                         hint: str) -> tuple[dict[str, Any], str]:
    """The JSON object in ``path`` and the file's SHA-256; it must hold every one of ``keys``.

    Errors name the file as ``kind`` (``"annotation"``, ``"track"``) of protocol ``owner``, the
    expected ``layout`` (``"COCO-format annotation"``), and ``hint``: how to make a good one.
    """
    if not path.is_file():
        raise OvbenchError(f"{path}: {kind} file of {owner} not found; {hint}")
    raw = path.read_bytes()
    try:
        dataset = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OvbenchError(f"{path}: corrupt {kind} JSON ({e}); {hint} again") from e
    if not isinstance(dataset, dict) or not all(k in dataset for k in keys):
        raise OvbenchError(f"{path}: not a {layout} file (needs {', '.join(keys)}); {hint}")
    return dataset, hashlib.sha256(raw).hexdigest()
