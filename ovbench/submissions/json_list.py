"""Reading a submission that is one JSON list, plain or gzipped, with errors that name the file and the fix."""
from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from pathlib import Path
from typing import Any

from ovbench.errors import OvbenchError


def load_json_list(path: Path | str, what: str, fix: str) -> tuple[list[Any], str]:
    """The JSON list in ``path`` (gzip is detected by its magic bytes) and the file's SHA-256.

    ``what`` names the expected file in errors (``"a COCO results .json or .json.gz"``) and
    ``fix`` says how to write a good one.
    """
    path = Path(path)
    if not path.is_file():
        raise OvbenchError(f"{path}: predictions file not found; pass {what}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        entries = json.loads(data)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OvbenchError(f"{path}: not a readable JSON (or gzipped JSON) file ({e}); {fix}") from e
    if not isinstance(entries, list):
        raise OvbenchError(f"{path}: top level is {type(entries).__name__}, not a list; {fix}")
    return entries, digest
