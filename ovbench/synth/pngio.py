"""PNG writing with fixed options, so that the same array always gives the same bytes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

_MODES = {(np.dtype(np.uint8), 3): "RGB", (np.dtype(np.uint8), 2): "L", (np.dtype(np.uint16), 2): "I;16"}


def save_png(array: np.ndarray, path: Path) -> None:
    """Write ``array`` (HxWx3 uint8 → RGB, HxW uint8 → L, HxW uint16 → I;16) as a PNG."""
    mode = _MODES.get((array.dtype, array.ndim))
    if mode is None:
        raise ValueError(f"cannot write a {array.dtype} array of shape {array.shape} as PNG")
    img = Image.fromarray(np.ascontiguousarray(array))
    assert img.mode == mode, (img.mode, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", compress_level=6, optimize=False)
