"""Decoding single-channel label images (PNG or TIFF) into integer arrays."""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

#: PIL modes that hold one integer per pixel, with the dtype ovbench reads them as.
LABEL_MODES = {"L": np.uint8, "P": np.uint8, "I;16": np.uint16, "I;16B": np.uint16, "I": np.int32}


class LabelDecodeError(ValueError):
    """The bytes are not a readable single-channel label image; the message says why."""


def decode_label_map(data: bytes) -> tuple[np.ndarray, str]:
    """Decode an encoded label image into ``(array of shape (H, W), PIL mode)``.

    Palette (``P``) images yield their palette indices. Multi-channel images raise
    :class:`LabelDecodeError` because their pixels are colours, not class indices.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                mode = im.mode
                if mode not in LABEL_MODES:
                    raise LabelDecodeError(
                        f"has mode {mode} ({len(im.getbands())} channels); expected a single-channel "
                        f"image of class indices (mode L for uint8, I;16 for uint16), not a colour visualisation")
                arr = np.asarray(im)
    except LabelDecodeError:
        raise
    except UnidentifiedImageError as e:
        raise LabelDecodeError("cannot be decoded as an image (not a PNG/TIFF, or corrupt)") from e
    except Exception as e:  # PIL raises many types for truncated or foreign files
        raise LabelDecodeError(f"cannot be decoded as an image ({type(e).__name__}: {e})") from e
    if arr.ndim != 2:
        raise LabelDecodeError(f"decodes to shape {arr.shape}; expected (H, W)")
    return arr, mode
