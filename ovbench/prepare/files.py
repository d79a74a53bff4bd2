"""File helpers every dataset preparer shares: id lists and required files, image headers and
label sizes, label maps encoded as PNG (uint8) or 16-bit TIFF (uint16), atomic writes that leave an
unchanged file alone, hard links with a copy fallback, stale-file removal, and the counts a
preparer reports.
"""
from __future__ import annotations

import filecmp
import io
import os
import secrets
import shutil
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from ovbench.errors import OvbenchError, ValidationError
from ovbench.records.store import atomic_write


def label_table(dataset_ids: Sequence[int], size: int, ignore: int, dtype: type) -> np.ndarray:
    """Lookup table of ``size`` entries: dataset value ``dataset_ids[k]`` -> class id ``k``, others ``ignore``."""
    lut = np.full(size, ignore, dtype)
    lut[np.asarray(dataset_ids)] = np.arange(len(dataset_ids))
    return lut


def read_id_list(path: Path, fix: str) -> list[str]:
    """The image ids of an ImageSets list (one id per line, blank lines skipped), in file order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise OvbenchError(f"{path}: cannot read it ({e}); {fix}") from e
    ids = [line.strip() for line in lines if line.strip()]
    odd = next((i for i in ids if len(i.split()) != 1), None)
    if odd is not None:
        raise OvbenchError(f"{path}: line {odd!r} is not one image id (a per-class list such as aeroplane_val.txt?); "
                           f"{fix}")
    dup = next((i for i, k in Counter(ids).items() if k > 1), None)
    if dup is not None:
        raise OvbenchError(f"{path}: image id {dup} is listed twice; {fix}")
    if not ids:
        raise OvbenchError(f"{path}: lists no image; {fix}")
    return ids


def require_files(root: Path, ids: Sequence[str], templates: Sequence[str], dataset: str, fix: str) -> None:
    """Raise one :class:`ValidationError` naming every ``root / template.format(id=...)`` that is not a file."""
    problems = [f"{root / t.format(id=i)} not found" for i in ids for t in templates
                if not (root / t.format(id=i)).is_file()]
    if problems:
        raise ValidationError(f"dataset {dataset}: {len(problems)} file(s) of the listed images are missing below "
                              f"{root}", problems, fix=fix)


def image_size(path: Path, image_format: str, fix: str) -> tuple[int, int]:
    """``(width, height)`` of an image read from its header; it must be in ``image_format`` (PIL's name)."""
    try:
        with Image.open(path) as im:
            size, found = im.size, im.format
    except Exception as e:  # PIL raises many types for truncated or foreign files
        raise OvbenchError(f"{path}: cannot read the image ({type(e).__name__}: {e}); {fix}") from e
    if found != image_format:
        raise OvbenchError(f"{path}: a {found} file, expected {image_format}; {fix}")
    return size


def check_size(label_path: Path, shape: tuple[int, ...], size: tuple[int, int], fix: str) -> None:
    """Raise unless a label map of ``shape`` (H, W) fits its image of ``size`` (W, H)."""
    if (shape[1], shape[0]) != size:
        raise OvbenchError(f"{label_path}: {shape[1]}x{shape[0]}, its image is {size[0]}x{size[1]}; both must come "
                           f"from the same release; {fix}")


def png_bytes(label: np.ndarray) -> bytes:
    """A uint8 label map of shape (H, W) as a single-channel (mode L) PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_if_changed(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically unless it already holds them: ``"written"`` or ``"unchanged"``."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return "unchanged"
    except OSError:
        pass
    atomic_write(path, lambda f: f.write(data))
    return "written"


def link_or_copy(src: Path, dst: Path) -> str:
    """Make ``dst`` hold ``src``'s bytes: ``"unchanged"`` (it already does), ``"linked"`` or ``"copied"``.

    A hard link is made under a temporary name and renamed into place; where the filesystem
    refuses hard links (another device, no support) the file is copied atomically instead.
    """
    if dst.is_file() and (os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False)):
        return "unchanged"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        with open(src, "rb") as f:
            atomic_write(dst, lambda out: shutil.copyfileobj(f, out))
        return "copied"
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return "linked"


def remove_stale(folder: Path, keep: set[str]) -> int:
    """Delete the files directly in ``folder`` (an output folder of ours) whose names are not in ``keep``."""
    stale = [p for p in folder.iterdir() if p.is_file() and p.name not in keep] if folder.is_dir() else []
    for p in stale:
        p.unlink()
    return len(stale)


def class_counts(classes: np.ndarray, ignore: int) -> dict[str, int]:
    """``classes_present``, ``min_class``, ``max_class`` (-1 when none) of the class ids in ``classes``."""
    ids = np.unique(classes[classes != ignore])
    return {"classes_present": int(ids.size), "min_class": int(ids[0]) if ids.size else -1,
            "max_class": int(ids[-1]) if ids.size else -1}


def write_counts(actions: Mapping[str, int], stale: int) -> dict[str, int]:
    """Counts of written and unchanged label files and removed stale ones."""
    return {"written": actions.get("written", 0), "unchanged": actions.get("unchanged", 0), "stale_removed": stale}


def image_counts(n: int, actions: Mapping[str, int], stale: int) -> dict[str, int]:
    """Counts of linked, copied and unchanged images and removed stale ones."""
    return {"images": n, **{k: actions.get(k, 0) for k in ("linked", "copied", "unchanged")}, "stale_removed": stale}


def tiff_bytes(label: np.ndarray) -> bytes:
    """A uint16 label map of shape (H, W) as a deflate-compressed 16-bit TIFF (PIL mode ``I;16``)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint16)).save(
        buf, format="TIFF", compression="tiff_adobe_deflate")
    return buf.getvalue()
