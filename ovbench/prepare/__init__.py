"""Dataset preparation: turn a dataset's official files into the files a protocol reads.

Each dataset has one module defining a :class:`~ovbench.prepare.base.Preparer` (name, help,
inputs, outputs, ``run``); :data:`PREPARERS` registers them, and ``ovbench data prepare NAME``
offers every registered name, so adding a dataset means adding a module and one entry here.
"""
from __future__ import annotations

from pathlib import Path

from ovbench.errors import OvbenchError
from ovbench.prepare import (ade20k, ade20k_full, cityscapes, coco_ovd, coco_panoptic, lvis, pascal_context, pascal_voc,
                             vipseg)
from ovbench.prepare.base import FileSummary, InputFile, Preparer, PrepareReport

PREPARERS: dict[str, Preparer] = {p.name: p for p in (
    coco_ovd.PREPARER, coco_panoptic.PREPARER, lvis.PREPARER, vipseg.PREPARER, ade20k.PREPARER, ade20k_full.PREPARER,
    pascal_context.PREPARER, pascal_voc.PREPARER, cityscapes.PREPARER)}


def prepare(name: str, root: Path | str, progress: bool = True) -> PrepareReport:
    """Run preparer ``name`` on the data root ``root`` (inputs checked first; nothing downloaded)."""
    if name not in PREPARERS:
        raise OvbenchError(f"unknown dataset preparer {name!r}; known: {', '.join(sorted(PREPARERS))}")
    return PREPARERS[name].prepare(Path(root), progress)


__all__ = ["PREPARERS", "FileSummary", "InputFile", "PrepareReport", "Preparer", "prepare"]
