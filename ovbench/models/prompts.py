"""Prompt templates, as data (``prompts.json``): named sets of templates with one ``{}`` for the class name.

``single`` is CLIP's plain "a photo of a {}."; ``scene`` adds phrasings for objects in a scene
(segmentation and detection), averaged per class name.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ovbench.errors import OvbenchError

PROMPTS_FILE = Path(__file__).with_name("prompts.json")


@lru_cache(maxsize=None)
def _all() -> dict[str, tuple[str, ...]]:
    return {name: tuple(ts) for name, ts in json.loads(PROMPTS_FILE.read_text()).items()}


def templates(name: str) -> tuple[str, ...]:
    """The template set ``name`` (see ``prompts.json``)."""
    sets = _all()
    if name not in sets:
        raise OvbenchError(f"unknown prompt template set {name!r}; known: {', '.join(sorted(sets))}")
    return sets[name]
