"""Region crops for the frozen CLIP classifier (ZSSeg's mask-crop step, Xu et al. 2022, §3.2).

Each binary mask proposal becomes one CLIP input: the mask's tight bounding box (optionally
enlarged about its centre), with the pixels of the box outside the mask filled with CLIP's mean
colour ("mean" fill, so they are 0 after CLIP normalisation), resized to CLIP's square input
resolution with bilinear interpolation and CLIP-normalised.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ovbench.models.clip import CLIP_MEAN, CLIP_STD

#: A box as half-open pixel bounds ``(y0, y1, x0, x1)``: rows ``y0 .. y1-1``, columns ``x0 .. x1-1``.
Box = tuple[int, int, int, int]


def mask_box(mask: torch.Tensor, expand_ratio: float = 1.0) -> Box | None:
    """Tight bounding box of the boolean mask ``(H, W)``, or ``None`` when the mask is empty.

    With ``expand_ratio`` r > 1 the box's height and width are multiplied by r about its centre
    (ZSSeg's ``expand_box``), rounded outwards to whole pixels and clipped to the image.
    """
    rows = mask.any(dim=1).nonzero()
    if rows.numel() == 0:
        return None
    cols = mask.any(dim=0).nonzero()
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    x0, x1 = int(cols[0]), int(cols[-1]) + 1
    if expand_ratio != 1.0:
        height, width = mask.shape
        y0, y1 = _expand(y0, y1, expand_ratio, height)
        x0, x1 = _expand(x0, x1, expand_ratio, width)
    return y0, y1, x0, x1


def _expand(lo: int, hi: int, ratio: float, limit: int) -> tuple[int, int]:
    centre, half = (lo + hi) / 2.0, (hi - lo) * ratio / 2.0
    eps = 1e-6      # keeps an exact integer bound from being rounded one pixel outwards
    return max(0, math.floor(centre - half + eps)), min(limit, math.ceil(centre + half - eps))


def image_tensor(image: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 RGB ``(H, W, 3)`` -> float32 ``(3, H, W)`` in [0, 1] on ``device``."""
    pixels = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image, copy=True))
    return pixels.to(device).permute(2, 0, 1).float().div_(255.0)


def region_crop(image: torch.Tensor, mask: torch.Tensor, box: Box, size: int) -> torch.Tensor:
    """One CLIP input: ``image`` float ``(3, H, W)`` in [0, 1], boolean ``mask`` ``(H, W)`` ->
    CLIP-normalised float32 ``(3, size, size)`` of ``box`` with the pixels outside the mask set to
    CLIP's mean colour, resized (bilinear, not aspect-preserving) to ``size`` × ``size``."""
    y0, y1, x0, x1 = box
    mean = torch.tensor(CLIP_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    crop = torch.where(mask[y0:y1, x0:x1].unsqueeze(0), image[:, y0:y1, x0:x1], mean)
    crop = F.interpolate(crop.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False)[0]
    return (crop - mean) / std


def crop_batches(image: torch.Tensor, masks: torch.Tensor, size: int, expand_ratio: float = 1.0,
                 batch_size: int = 32) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The crops of the non-empty masks, in query order, ``batch_size`` at a time.

    ``image`` float ``(3, H, W)`` in [0, 1], boolean ``masks`` ``(Q, H, W)``; yields (crops float32
    ``(n, 3, size, size)``, their query indices int64 ``(n,)``) with 1 <= n <= ``batch_size``.
    Empty masks get no crop (ZSSeg's ``valid_flag``).
    """
    boxes = [(q, mask_box(mask, expand_ratio)) for q, mask in enumerate(masks)]
    valid = [(q, box) for q, box in boxes if box is not None]
    for start in range(0, len(valid), batch_size):
        chunk = valid[start:start + batch_size]
        crops = torch.stack([region_crop(image, masks[q], box, size) for q, box in chunk])
        yield crops, torch.tensor([q for q, _ in chunk], dtype=torch.int64, device=image.device)


def region_crops(image: torch.Tensor, masks: torch.Tensor, size: int,
                 expand_ratio: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """All crops at once (see :func:`crop_batches`): (crops ``(N, 3, size, size)``, query indices ``(N,)``)
    for the N non-empty masks."""
    batches = list(crop_batches(image, masks, size, expand_ratio, batch_size=max(1, len(masks))))
    if not batches:
        return image.new_zeros((0, 3, size, size)), torch.zeros(0, dtype=torch.int64, device=image.device)
    return torch.cat([c for c, _ in batches]), torch.cat([i for _, i in batches])
