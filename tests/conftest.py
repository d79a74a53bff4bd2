"""Shared fixtures: tiny protocols and label-map datasets written to tmp_path."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from ovbench.protocols.schema import Protocol, protocol_from_dict


def make_protocol(num_classes: int, novel: Sequence[int] = (), ignore_label: int = 255,
                  pid: str = "toy") -> Protocol:
    """A semseg protocol with ``num_classes`` classes whose GT lives at ``<root>/labels/{id}.png``."""
    return protocol_from_dict({
        "id": pid, "version": 1, "task": "semseg", "dataset": "toy", "split": "val",
        "layout": {"images": "images/{id}.png", "labels": "labels/{id}.png"},
        "ignore_label": ignore_label, "metrics": ["mIoU"],
        "classes": [{"id": i, "name": f"class{i}", "partition": "novel" if i in novel else "base"}
                    for i in range(num_classes)]})


def save_label(path: Path, arr: np.ndarray) -> None:
    """Save a label map as uint8 (mode L) or uint16 (mode I;16) PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr if arr.dtype == np.uint16 else arr.astype(np.uint8)).save(path)


def write_pairs(root: Path, pred_dir: Path, gts: dict[str, np.ndarray], preds: dict[str, np.ndarray]) -> None:
    for image_id, gt in gts.items():
        save_label(root / "labels" / f"{image_id}.png", gt)
    for image_id, pred in preds.items():
        save_label(pred_dir / f"{image_id}.png", pred)


@pytest.fixture
def toy_protocol() -> Protocol:
    return make_protocol(3, novel=(2,))


def rect_mask(x: int, y: int, w: int, h: int, shape: tuple[int, int] = (30, 40)) -> np.ndarray:
    """A uint8 mask of ``shape`` (height, width) with the rectangle x, y, w, h set."""
    m = np.zeros(shape, dtype=np.uint8)
    m[y:y + h, x:x + w] = 1
    return m


def encode(mask: np.ndarray) -> str:
    """The COCO compressed RLE string of ``mask``."""
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


def encode_runs(runs: list[int]) -> str:
    """COCO's compressed-string writer (pycocotools rleToString), for any integers."""
    out = []
    for i, run in enumerate(runs):
        x = run - (runs[i - 2] if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr(48 + (c | (0x20 if more else 0))))
    return "".join(out)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for the module: on a shared 2-core machine two OpenMP threads make every
    small convolution ~20x slower. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
