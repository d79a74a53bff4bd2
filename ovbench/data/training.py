"""Training images of a semantic-segmentation protocol: its other split, labels mapped to a training vocabulary.

Protocols describe evaluation splits; training reads the same layout with the split name swapped
(``images/val/{id}.png`` -> ``images/train/{id}.png``, ``panoptic_semseg_val2017`` ->
``panoptic_semseg_train2017``) unless explicit templates are given.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ovbench.data.augment import augment
from ovbench.data.semseg import preparation_hint
from ovbench.errors import OvbenchError
from ovbench.protocols import Layout, Protocol


def swap_split(template: str, old: str, new: str) -> str:
    """``template`` with every occurrence of the split name ``old`` that is not part of a longer
    alphanumeric word replaced by ``new``; an error when there is none."""
    pattern = rf"(?<![A-Za-z0-9]){re.escape(old)}(?![A-Za-z0-9])"
    swapped, count = re.subn(pattern, new, template)
    if not count:
        raise OvbenchError(f"layout template {template!r} does not name the split {old!r}; give the training "
                           f"split's templates explicitly (data.images / data.labels in the config)")
    return swapped


def training_layout(protocol: Protocol, split: str, images: str | None = None, labels: str | None = None) -> Layout:
    """The layout of ``split``: explicit templates where given, else the protocol's with the split swapped."""
    return Layout(images=images or swap_split(protocol.layout.images, protocol.split, split),
                  labels=labels or swap_split(protocol.layout.labels, protocol.split, split))


def vocabulary_lookup(protocol: Protocol, class_ids: Sequence[int], ignore: int = 255) -> np.ndarray:
    """Table mapping every label value to its index in ``class_ids`` (the training vocabulary) or ``ignore``."""
    size = 65536 if protocol.num_classes > 255 else 256
    table = np.full(size, ignore, np.int64)
    table[np.asarray(class_ids, np.int64)] = np.arange(len(class_ids))
    return table


class SemsegTrainingSet(Dataset):
    """``(image uint8 (3, S, S) tensor, label int64 (S, S) tensor, index)`` crops of the ``split`` images of
    ``protocol`` below ``data_root``; labels hold indices into ``class_ids`` (the training vocabulary) and
    255 elsewhere (other classes, the protocol's ignore label, padding). Augmentation follows
    :func:`ovbench.data.augment.augment`, drawn from a generator seeded by ``(seed, index, epoch)``:
    keys are ``(index, epoch)`` pairs (the engine's sampler gives them, see ``keyed_by_epoch``) or
    plain indices (epoch 0).
    """

    keyed_by_epoch = True

    def __init__(self, protocol: Protocol, data_root: Path | str, class_ids: Sequence[int], split: str = "train",
                 crop_size: int = 512, scale_range: tuple[float, float] = (0.8, 1.2), flip: bool = True,
                 images: str | None = None, labels: str | None = None, seed: int = 0) -> None:
        self.protocol, self.data_root = protocol, Path(data_root)
        self.layout = training_layout(protocol, split, images, labels)
        self.lookup = vocabulary_lookup(protocol, class_ids)
        self.crop_size, self.scale_range, self.flip, self.seed = crop_size, tuple(scale_range), flip, seed
        self.ids = self._list_ids()

    def _list_ids(self) -> list[str]:
        prefix, suffix = self.layout.labels.split("{id}")
        folder = self.data_root / prefix
        if not folder.is_dir():
            raise OvbenchError(f"{folder}: training labels of {self.protocol.id} not found; "
                               f"{preparation_hint(self.protocol)}")
        ids = sorted(p.relative_to(folder).as_posix()[: -len(suffix)]
                     for p in folder.rglob(f"*{suffix}") if p.is_file())
        if not ids:
            raise OvbenchError(f"{folder}: no '*{suffix}' training labels; {preparation_hint(self.protocol)}")
        return ids

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The un-augmented image ``(H, W, 3)`` uint8 and raw label ``(H, W)`` of sample ``index``."""
        iid = self.ids[index]
        image_path, label_path = self.layout.image_path(self.data_root, iid), self.layout.label_path(self.data_root, iid)
        try:
            with Image.open(image_path) as im:
                image = np.asarray(im.convert("RGB"))
            with Image.open(label_path) as im:
                label = np.asarray(im)
        except (OSError, ValueError) as e:
            raise OvbenchError(f"{image_path} / {label_path}: cannot read the training pair ({e}); "
                               f"re-create the data") from None
        if label.ndim != 2 or label.shape != image.shape[:2]:
            raise OvbenchError(f"{label_path}: label shape {label.shape} does not match its image "
                               f"{image.shape[:2]}; labels are single-channel class-index PNGs of the image's size")
        return image, label

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        image, label = self.read(index)
        rng = np.random.default_rng([self.seed, index, epoch])
        mapped = self.lookup[label.astype(np.int64)]
        image, mapped = augment(image, mapped.astype(np.uint8), self.crop_size, self.scale_range, self.flip, 255, rng)
        return (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1),
                torch.from_numpy(mapped.astype(np.int64)), index)


def collate(samples: Sequence[tuple[torch.Tensor, torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack ``(image (3, S, S) uint8, label (S, S) int64, sample index)`` samples into images
    ``(B, 3, S, S)``, labels ``(B, S, S)`` and indices ``(B,)`` (which image of the set each crop is)."""
    return (torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples]),
            torch.tensor([s[2] for s in samples], dtype=torch.int64))
