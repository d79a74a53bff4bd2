"""Training augmentation for semantic segmentation (Mask2Former / GKC, spec §6): random horizontal
flip -> ResizeScale (aspect kept) -> FixedSizeCrop with padding.

Images are uint8 ``(H, W, 3)``, labels integer ``(H, W)``; padding fills images with
:data:`IMAGE_PAD` and labels with the ignore value.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

#: Grey that pads images (detectron2 FixedSizeCrop's 128).
IMAGE_PAD = 128


def resize_pair(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``image`` bilinear, ``label`` nearest, to ``size`` = (height, width)."""
    h, w = size
    img = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    mode = "I;16" if label.dtype == np.uint16 else "L" if label.dtype == np.uint8 else "I"
    lab = np.asarray(Image.fromarray(label.astype(np.int32) if mode == "I" else label, mode=mode)
                     .resize((w, h), Image.NEAREST)).astype(label.dtype)
    return img, lab


def resize_scale(image: np.ndarray, label: np.ndarray, target: int, scale: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """detectron2 ``ResizeScale``: fit the image inside a ``target·scale`` square, aspect kept."""
    h, w = label.shape
    factor = min(target * scale / h, target * scale / w)
    return resize_pair(image, label, (max(1, round(h * factor)), max(1, round(w * factor))))


def fixed_size_crop(image: np.ndarray, label: np.ndarray, size: int, ignore_label: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random ``size`` x ``size`` window (where the image is larger), padded bottom/right to ``size``."""
    h, w = label.shape
    top = int(rng.integers(0, h - size + 1)) if h > size else 0
    left = int(rng.integers(0, w - size + 1)) if w > size else 0
    image, label = image[top:top + size, left:left + size], label[top:top + size, left:left + size]
    out_img = np.full((size, size, 3), IMAGE_PAD, np.uint8)
    out_lab = np.full((size, size), ignore_label, label.dtype)
    out_img[:image.shape[0], :image.shape[1]] = image
    out_lab[:label.shape[0], :label.shape[1]] = label
    return out_img, out_lab


def augment(image: np.ndarray, label: np.ndarray, crop_size: int, scale_range: tuple[float, float],
            flip: bool, ignore_label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flip (p = 0.5 when ``flip``), ResizeScale with scale ~ U(``scale_range``), crop/pad to ``crop_size``."""
    if flip and rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    scale = float(rng.uniform(*scale_range))
    image, label = resize_scale(np.ascontiguousarray(image), np.ascontiguousarray(label), crop_size, scale)
    return fixed_size_crop(image, label, crop_size, ignore_label, rng)
