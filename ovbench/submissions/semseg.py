"""The semantic-segmentation submission format.

A submission is a directory, a ``.zip`` or a ``.tar`` (optionally ``.tar.gz``) of single-channel
PNGs named ``<image_id>.png`` whose pixels are class indices in the protocol's class order:
uint8 (mode ``L``) when the protocol has at most 255 classes, uint16 (mode ``I;16``) otherwise.
Image ids may contain ``/`` (Cityscapes' ``city/frame``), which become sub-folders. An archive
whose members all sit in one top folder (``preds/xxx.png``) is read as if that folder were the
root. Hidden files and ``__MACOSX`` entries are skipped.
"""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from ovbench.errors import OvbenchError

SUFFIX = ".png"


def expected_dtype(num_classes: int) -> type:
    """uint8 for at most 255 classes, else uint16."""
    return np.uint8 if num_classes <= 255 else np.uint16


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _strip_common_folder(names: list[str]) -> tuple[str, list[str]]:
    tops = {PurePosixPath(n).parts[0] for n in names}
    if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in names):
        top = tops.pop() + "/"
        return top, [n[len(top):] for n in names]
    return "", names


class SemsegSubmission:
    """Read access to a submission's PNGs by image id, whatever the container."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise OvbenchError(f"{self.path}: predictions not found; pass a directory, .zip or .tar of "
                               f"<image_id>.png files")
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        if self.path.is_dir():
            names = [p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()]
            prefix = ""
        else:
            names = self._open_archive()
            prefix, names = _strip_common_folder(names)
        self._prefix = prefix
        names = sorted(n for n in names if not _skipped(n))
        #: Files that are not ``.png`` (reported as problems by the evaluator).
        self.foreign_files = [n for n in names if not n.endswith(SUFFIX)]
        self._ids = [n[: -len(SUFFIX)] for n in names if n.endswith(SUFFIX)]

    def _open_archive(self) -> list[str]:
        try:
            if zipfile.is_zipfile(self.path):
                self._zip = zipfile.ZipFile(self.path)
                return [i.filename for i in self._zip.infolist() if not i.is_dir()]
            if tarfile.is_tarfile(self.path):
                self._tar = tarfile.open(self.path)
                return [m.name for m in self._tar.getmembers() if m.isfile()]
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
            raise OvbenchError(f"{self.path}: corrupt archive ({e}); re-create the .zip/.tar") from e
        raise OvbenchError(f"{self.path}: neither a directory nor a .zip/.tar archive; pass one of those")

    @property
    def is_directory(self) -> bool:
        return self._zip is None and self._tar is None

    def ids(self) -> list[str]:
        """Sorted image ids of the PNG members."""
        return list(self._ids)

    def member_name(self, image_id: str) -> str:
        """The file's name as the user sees it, for error messages."""
        return f"{self.path}/{self._prefix}{image_id}{SUFFIX}" if self.is_directory else \
            f"{self.path}:{self._prefix}{image_id}{SUFFIX}"

    def file_path(self, image_id: str) -> Path:
        """On-disk path of a directory submission's PNG (directories only)."""
        return self.path / f"{image_id}{SUFFIX}"

    def read(self, image_id: str) -> bytes:
        """The encoded PNG of ``image_id``."""
        name = f"{self._prefix}{image_id}{SUFFIX}"
        if self._zip is not None:
            return self._zip.read(name)
        if self._tar is not None:
            f = self._tar.extractfile(name)
            if f is None:
                raise OvbenchError(f"{self.path}:{name}: not a regular file in the tar")
            return f.read()
        return self.file_path(image_id).read_bytes()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        if self._tar is not None:
            self._tar.close()
