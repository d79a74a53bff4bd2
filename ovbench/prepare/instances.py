"""Restricting a COCO-style instances document (COCO, LVIS) to a set of categories.

A document is the parsed JSON: ``images`` (dicts with ``id``), ``annotations`` (dicts with
``image_id`` and ``category_id``) and ``categories`` (dicts with ``id``).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping

from tqdm import tqdm

from ovbench.errors import OvbenchError

Doc = dict[str, Any]


def restrict_to_categories(doc: Doc, keep: Collection[int], where: Path, fix: str,
                           progress: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(images, annotations)``: the annotations whose category is in ``keep`` (crowd ones
    included) and the images holding at least one of them, both in input order.

    Raises a one-line :class:`OvbenchError` naming ``where`` if an entry lacks an id field or
    an annotation points at an image that is not in ``images``.
    """
    annotations: list[dict[str, Any]] = []
    image_ids: set[int] = set()
    try:
        for a in tqdm(doc["annotations"], desc=f"filter {where.name}", unit="ann", disable=not progress):
            if a["category_id"] in keep:
                annotations.append(a)
                image_ids.add(a["image_id"])
        images = [im for im in doc["images"] if im["id"] in image_ids]
    except (KeyError, TypeError) as e:
        raise OvbenchError(f"{where}: malformed image or annotation entry (no field {e}); {fix}") from e
    unknown = image_ids - {im["id"] for im in images}
    if unknown:
        raise OvbenchError(f"{where}: {len(unknown)} image id(s) of annotations are not in 'images' "
                           f"(e.g. {min(unknown)}); {fix}")
    return images, annotations


def count_by(annotations: Iterable[Mapping[str, Any]], group: Mapping[int, str], where: Path,
             fix: str) -> Counter[str]:
    """How many ``annotations`` fall in each group of ``group`` (category id -> group name).

    Raises a one-line :class:`OvbenchError` naming ``where`` for a category id not in ``group``.
    """
    counts: Counter[str] = Counter()
    for a in annotations:
        cid = a.get("category_id")
        if cid not in group:
            raise OvbenchError(f"{where}: annotation {a.get('id')} has category_id {cid!r}, "
                               f"which is not among 'categories'; {fix}")
        counts[group[cid]] += 1
    return counts


def crowd_count(annotations: Iterable[Mapping[str, Any]]) -> int:
    """How many of ``annotations`` are crowd regions (``iscrowd`` 1)."""
    return sum(1 for a in annotations if a.get("iscrowd", 0))
