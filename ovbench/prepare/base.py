"""What a dataset preparer is: its inputs, its outputs, its report, and the input check.

A preparer turns a dataset's official files below ``--root`` into the files a protocol reads
(``ovbench data prepare NAME --root DIR``). It never downloads: before doing anything it checks
that every input is there and otherwise raises one error listing each missing file with where
to get it. Preparers validate every input before writing anything, and write each output
atomically, so an invalid input or an interrupted run leaves no half-written output.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from ovbench.errors import ValidationError


@dataclass(frozen=True)
class InputFile:
    """One official file (or folder, when ``path`` ends in ``/``) a preparer reads: ``path``
    relative to ``--root``, what it is, where to get it."""

    path: str
    what: str
    source: str


@dataclass(frozen=True)
class FileSummary:
    """One file a preparer wrote (``action`` ``"wrote"``) or only validated (``"checked"``).

    ``path`` is relative to ``--root``; ``counts`` maps a label (``"images"``, ...) to a count,
    in the order the CLI prints them.
    """

    path: str
    action: str
    counts: Mapping[str, int]


@dataclass(frozen=True)
class PrepareReport:
    """What a preparer did: the files it wrote or checked, and conventions worth stating."""

    name: str
    root: Path
    files: tuple[FileSummary, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Preparer:
    """A named preparer. ``run(root, progress)`` does the work once the inputs are known to exist.

    ``protocols`` are the ids of the protocols whose files it writes; ``ovbench data check``
    names this preparer when one of their files is missing.
    """

    name: str
    help: str
    inputs: tuple[InputFile, ...]
    outputs: tuple[str, ...]
    run: Callable[[Path, bool], PrepareReport]
    protocols: tuple[str, ...] = ()

    def missing_inputs(self, root: Path) -> list[InputFile]:
        return [f for f in self.inputs
                if not ((root / f.path).is_dir() if f.path.endswith("/") else (root / f.path).is_file())]

    def prepare(self, root: Path, progress: bool = True) -> PrepareReport:
        """Check every input, then run; raises one :class:`ValidationError` naming every missing input."""
        missing = self.missing_inputs(root)
        if missing:
            raise ValidationError(
                f"dataset {self.name}: input files missing below {root}",
                [f"{root / f.path} not found ({f.what}); get it from {f.source}" for f in missing],
                fix="place the official files at the paths above (ovbench downloads nothing) and re-run")
        return self.run(root, progress)
