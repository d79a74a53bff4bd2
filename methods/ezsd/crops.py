"""EZSD's CLIP box crops (spec §3.3, §4.1) and the COCO-format box annotations they are cut from.

A box crop, as EZAD's ``ClsFinetuner`` / ``ClsProposalGenerator`` make it:

1. enlarge the box ``scale``x about its centre (1.2 for GT boxes and distillation targets, 1.0 for
   proposal scoring), clip it to the image and round outwards to whole pixels
   (``floor`` of the top-left, ``ceil`` of the bottom-right);
2. paste that ``h x w`` window centred into a zero-filled (black) square of side ``max(h, w)``,
   the content starting at offset ``(side - w) // 2`` / ``(side - h) // 2``;
3. resize the square to the CLIP input side with bicubic interpolation (antialiased, as PIL's
   resize in CLIP's preprocessing), clamp to [0, 255] and normalise with CLIP's mean / std.

EZAD clips the bottom-right corner to ``W - 1`` / ``H - 1`` (dropping the last pixel row and
column of boxes that touch the border); here windows are half-open and may reach ``W`` / ``H``.

:func:`box_crops` is vectorised: windows of one square side are gathered with one indexing
operation and resized with one ``interpolate`` call, in chunks of bounded memory, so thousands
of anchors per image are cheap apart from the CLIP forward passes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ovbench.errors import OvbenchError
from ovbench.models.clip import CLIP_MEAN, CLIP_STD

#: Largest number of float32 pixel values gathered per resize call (64 MiB).
CHUNK_VALUES = 1 << 24


def clip_input_size(model: torch.nn.Module) -> int:
    """The square input side of an open_clip model's image tower (``model.visual.image_size``), px."""
    size = model.visual.image_size
    side = size if isinstance(size, int) else size[0]
    if not isinstance(size, int) and size[0] != size[1]:
        raise OvbenchError(f"CLIP input {tuple(size)} is not square; EZSD crops need a square CLIP input")
    return int(side)


def crop_windows(boxes: torch.Tensor, height: int, width: int, scale: float = 1.2) -> torch.Tensor:
    """Integer pixel windows ``(N, 4)`` int64 ``[x0, y0, x1, y1]`` (half-open) of boxes
    ``(N, 4)`` xyxy in pixels, enlarged ``scale``x about their centres, clipped to the
    ``height x width`` image and rounded outwards.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (scale / 2)
    limit = torch.tensor([width, height], dtype=torch.float64)
    low = torch.floor(torch.maximum(centre - half, torch.zeros(2, dtype=torch.float64)))
    high = torch.ceil(torch.minimum(centre + half, limit))
    windows = torch.cat([low, high], dim=1).to(torch.int64)
    empty = (windows[:, 2] <= windows[:, 0]) | (windows[:, 3] <= windows[:, 1])
    if empty.any():
        i = int(torch.nonzero(empty)[0])
        raise OvbenchError(f"box {boxes[i].tolist()} has no pixel inside the {width}x{height} image")
    return windows


def as_image_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """An RGB image ``(H, W, 3)``, uint8 or float in [0, 255], as float32 ``(3, H, W)``."""
    x = image if isinstance(image, torch.Tensor) else torch.tensor(np.asarray(image))
    if x.dim() != 3 or x.shape[-1] != 3:
        raise OvbenchError(f"image of shape {tuple(x.shape)}: expected (H, W, 3) RGB")
    return x.permute(2, 0, 1).float()


def square_windows(image: torch.Tensor, windows: torch.Tensor, side: int) -> torch.Tensor:
    """Zero-padded squares ``(N, 3, side, side)`` float32: each window of ``windows`` ``(N, 4)``
    (all with ``max(w, h) == side``) of ``image`` ``(3, H, W)``, centred, zeros elsewhere."""
    _, height, width = image.shape
    x0, y0, x1, y1 = windows.unbind(1)
    steps = torch.arange(side)
    xs = (x0 - (side - (x1 - x0)) // 2)[:, None] + steps            # (N, side) image columns
    ys = (y0 - (side - (y1 - y0)) // 2)[:, None] + steps            # (N, side) image rows
    inside_x = (xs >= x0[:, None]) & (xs < x1[:, None])
    inside_y = (ys >= y0[:, None]) & (ys < y1[:, None])
    pixels = image[:, ys.clamp(0, height - 1)[:, :, None], xs.clamp(0, width - 1)[:, None, :]]
    inside = (inside_y[:, :, None] & inside_x[:, None, :]).unsqueeze(0)
    return (pixels * inside).permute(1, 0, 2, 3)


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """``(N, 3, S, S)`` pixel values in [0, 255] → CLIP-normalised float32."""
    mean = torch.tensor(CLIP_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=pixels.device).view(1, 3, 1, 1)
    return (pixels / 255.0 - mean) / std


def box_crops(image: np.ndarray | torch.Tensor, boxes: torch.Tensor | np.ndarray, scale: float = 1.2,
              size: int = 224) -> torch.Tensor:
    """CLIP inputs ``(N, 3, size, size)`` float32 for boxes ``(N, 4)`` xyxy (pixels) of an RGB
    ``image`` ``(H, W, 3)`` (uint8, or float in [0, 255]); see the module docstring.

    ``size`` is the CLIP's input side (:func:`clip_input_size`); ``scale`` 1.2 for GT boxes and
    distillation regions, 1.0 for scoring anchors.
    """
    pixels = as_image_tensor(image)
    windows = crop_windows(boxes, pixels.shape[1], pixels.shape[2], scale)
    sides = torch.maximum(windows[:, 2] - windows[:, 0], windows[:, 3] - windows[:, 1])
    out = torch.empty((len(windows), 3, size, size), dtype=torch.float32)
    for side in sides.unique().tolist():
        members = torch.nonzero(sides == side).flatten()
        per_chunk = max(1, CHUNK_VALUES // (3 * side * side))
        for chunk in members.split(per_chunk):
            squares = square_windows(pixels, windows[chunk], side)
            resized = F.interpolate(squares, size=(size, size), mode="bicubic", align_corners=False,
                                    antialias=True)
            out[chunk] = normalise(resized.clamp_(0.0, 255.0))
    return out


@dataclass
class BoxAnnotations:
    """A COCO-format detection JSON below a data root (image ``file_name`` relative to the root).

    ``categories`` maps category id to its record (``name``, ``partition`` ``base``/``novel``);
    ``boxes`` maps image id to ``(xyxy (G, 4) float32, category ids (G,) int64)``.
    """

    root: Path
    path: Path
    images: dict[int, dict[str, Any]] = field(repr=False)
    categories: dict[int, dict[str, Any]] = field(repr=False)
    boxes: dict[int, tuple[np.ndarray, np.ndarray]] = field(repr=False)

    @classmethod
    def load(cls, data_root: Path | str, relative: Path | str) -> "BoxAnnotations":
        root = Path(data_root)
        path = root / relative
        if not path.is_file():
            raise OvbenchError(f"{path}: annotation file not found; make the synthetic world with "
                               f"`ovbench data synth --out DIR` (or prepare the dataset) and pass --data-root DIR")
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
            raise OvbenchError(f"{path}: not a COCO-format annotation file (needs images, annotations, categories)")
        categories = {int(c["id"]): c for c in data["categories"]}
        if any(c.get("partition") not in ("base", "novel") for c in categories.values()):
            raise OvbenchError(f"{path}: every category needs a 'partition' of 'base' or 'novel' "
                               f"(as `ovbench data synth` and `ovbench data prepare coco-ovd` write)")
        grouped: dict[int, list[tuple[list[float], int]]] = {int(im["id"]): [] for im in data["images"]}
        for a in data["annotations"]:
            if a.get("iscrowd", 0):
                continue
            x, y, w, h = a["bbox"]
            if w > 0 and h > 0:
                grouped[int(a["image_id"])].append(([x, y, x + w, y + h], int(a["category_id"])))
        boxes = {i: (np.asarray([b for b, _ in rows], np.float32).reshape(-1, 4),
                     np.asarray([c for _, c in rows], np.int64)) for i, rows in grouped.items()}
        images = {int(im["id"]): im for im in data["images"]}
        return cls(root=root, path=path, images=images, categories=categories, boxes=boxes)

    def class_ids(self, partition: str | None = None) -> list[int]:
        """Category ids in file order, optionally of one partition (``base`` / ``novel``)."""
        return [cid for cid, c in self.categories.items() if partition is None or c["partition"] == partition]

    def names(self, class_ids: list[int]) -> list[str]:
        return [self.categories[cid]["name"] for cid in class_ids]

    def image(self, image_id: int) -> np.ndarray:
        """The RGB image ``(H, W, 3)`` uint8."""
        path = self.root / self.images[image_id]["file_name"]
        if not path.is_file():
            raise OvbenchError(f"{path}: image of {self.path} not found below --data-root {self.root}")
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))

    def gt(self, image_id: int, class_ids: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """GT boxes ``(G, 4)`` xyxy float32 and their category ids ``(G,)`` of one image, optionally
        only those of ``class_ids``."""
        boxes, cats = self.boxes[image_id]
        if class_ids is None:
            return boxes, cats
        keep = np.isin(cats, class_ids)
        return boxes[keep], cats[keep]
