"""Training images of a detection protocol: a COCO instances JSON, boxes and masks mapped to a training vocabulary.

Protocols describe evaluation splits; training reads the same layout with the split name swapped
(``detection/instances_val.json`` -> ``detection/instances_train.json``, ``coco/val2017/{file_name}`` ->
``coco/train2017/{file_name}``) unless explicit paths are given. Image path templates are formatted
with the image entry's ``file_name``, ``id`` and ``coco_split`` (the folder of its ``coco_url``, LVIS).
"""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from ovbench.data.detection import preparation_hint
from ovbench.data.training import swap_split
from ovbench.errors import OvbenchError
from ovbench.protocols import Protocol

#: ``extra_targets(image_id, rng) -> {key: tensor}``: per-image additions to a training target, e.g.
#: ``distill_boxes`` ``(N, 4)`` xyxy in the *original* image's pixels (the dataset flips them with the
#: image), ``distill_embeddings`` ``(N, D)``, ``distill_weights`` ``(N,)``. ``rng`` is seeded by
#: ``(seed, index, epoch)``, so per-iteration draws are reproducible and survive a resume.
ExtraTargets = Callable[[int, np.random.Generator], Mapping[str, torch.Tensor]]
#: Target keys holding xyxy boxes that a horizontal flip must mirror.
BOX_KEYS = ("boxes", "distill_boxes")


def image_path(template: str, data_root: Path, image: Mapping[str, Any]) -> Path:
    """The file of a COCO/LVIS ``images`` entry: ``template`` formatted with its ``file_name`` (LVIS: the
    name in ``coco_url``), ``id`` and ``coco_split`` (the folder in ``coco_url``), below ``data_root``."""
    url = PurePosixPath(urlparse(str(image.get("coco_url", ""))).path)
    fields = {"file_name": image.get("file_name") or url.name, "id": image["id"], "coco_split": url.parent.name}
    try:
        return Path(data_root) / template.format(**fields)
    except (KeyError, IndexError) as e:
        raise OvbenchError(f"image path template {template!r} uses {e}; only {{file_name}}, {{id}} and "
                           f"{{coco_split}} are known") from None


def read_rgb(path: Path) -> np.ndarray:
    """An image file as uint8 RGB ``(H, W, 3)``; a clear error when it cannot be read."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise OvbenchError(f"{path}: cannot read the image ({e}); re-create the data") from None


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, RLE or compressed RLE) as a uint8 ``(height, width)`` mask."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")
               if isinstance(segmentation["counts"], str) else segmentation["counts"]}
    return mask_utils.decode(rle).astype(np.uint8)


def _split_swapped(template: str, old: str, new: str) -> str:
    """``template`` with the split swapped, or unchanged when it does not name the split."""
    try:
        return swap_split(template, old, new)
    except OvbenchError:
        return template


class DetectionTrainingSet(Dataset):
    """``(image float (3, H, W) in [0, 1], target)`` samples of a COCO instances JSON.

    ``target``: ``boxes`` ``(N, 4)`` float32 xyxy pixels, ``labels`` ``(N,)`` int64 in ``1..K`` (index into
    ``class_ids``, the training vocabulary, plus one; 0 is background), ``masks`` ``(N, H, W)`` uint8,
    ``image_id`` (int64 scalar), plus what :attr:`extra_targets` adds. Only annotations of ``class_ids``
    are kept (crowd ones and empty boxes dropped), and images left without any are dropped.
    ``annotations`` / ``images`` override the protocol's label file and image template with the split
    swapped (relative to ``data_root``). A horizontal flip (probability 0.5 when ``flip``) mirrors the image,
    masks and every box key of :data:`BOX_KEYS`, drawn from a generator seeded by ``(seed, index, epoch)``:
    keys are ``(index, epoch)`` pairs (the engine's sampler gives them) or plain indices (epoch 0).
    """

    keyed_by_epoch = True

    def __init__(self, protocol: Protocol, data_root: Path | str, class_ids: Sequence[int], split: str = "train",
                 annotations: str | None = None, images: str | None = None, flip: bool = True, seed: int = 0,
                 extra_targets: ExtraTargets | None = None) -> None:
        if protocol.task != "detection":
            raise OvbenchError(f"protocol {protocol.id} is a {protocol.task} protocol; detector training "
                               f"reads a detection protocol's COCO annotations")
        self.protocol, self.data_root = protocol, Path(data_root)
        self.flip, self.seed, self.extra_targets = flip, seed, extra_targets
        self.path = self.data_root / (annotations or swap_split(protocol.layout.labels, protocol.split, split))
        self.image_template = images or _split_swapped(protocol.layout.images, protocol.split, split)
        self.class_ids = list(class_ids)
        self.label_of = {cid: k + 1 for k, cid in enumerate(self.class_ids)}   # protocol id -> 1..K
        self.images, self.annotations = self._load()

    def _load(self) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
        if not self.path.is_file():
            raise OvbenchError(f"{self.path}: training annotations of {self.protocol.id} not found; "
                               f"{preparation_hint(self.protocol)}, or set data.annotations")
        try:
            data = json.loads(self.path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise OvbenchError(f"{self.path}: corrupt annotation JSON ({e}); re-create it") from None
        if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
            raise OvbenchError(f"{self.path}: not a COCO instances file (needs images, annotations, categories)")
        missing = sorted(set(self.class_ids) - {int(c["id"]) for c in data["categories"]})
        if missing:
            raise OvbenchError(f"{self.path}: no categories with ids {missing[:10]} of the training vocabulary; "
                               f"is this {self.protocol.id}'s training file?")
        wanted = set(self.class_ids)
        by_image: dict[int, list[dict[str, Any]]] = {}
        for a in data["annotations"]:
            if a["category_id"] in wanted and not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0:
                by_image.setdefault(int(a["image_id"]), []).append(a)
        kept = sorted((im for im in data["images"] if int(im["id"]) in by_image), key=lambda im: int(im["id"]))
        if not kept:
            raise OvbenchError(f"{self.path}: no image has an annotation of the training classes")
        return kept, by_image

    def __len__(self) -> int:
        return len(self.images)

    def read(self, index: int) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        """The un-flipped image ``(H, W, 3)`` uint8 and target of sample ``index`` (no extra targets)."""
        entry = self.images[index]
        image = read_rgb(image_path(self.image_template, self.data_root, entry))
        height, width = image.shape[:2]
        if (int(entry.get("height", height)), int(entry.get("width", width))) != (height, width):
            raise OvbenchError(f"{self.path}: image {entry['id']} is {height}x{width} px on disk but "
                               f"{entry['height']}x{entry['width']} in the annotations")
        anns = self.annotations[int(entry["id"])]
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float32)
        masks = np.stack([decode_segmentation(a["segmentation"], height, width) for a in anns]) \
            if all("segmentation" in a for a in anns) else np.zeros((len(anns), height, width), np.uint8)
        boxes = boxes.clamp(min=0).minimum(torch.tensor([width, height, width, height], dtype=torch.float32))
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])    # boxes outside the image vanish
        labels = torch.tensor([self.label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        return image, {"boxes": boxes[keep], "labels": labels[keep], "masks": torch.from_numpy(masks)[keep],
                       "image_id": torch.tensor(int(entry["id"]))}

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        image, target = self.read(index)
        if self.extra_targets is not None:
            extra = self.extra_targets(int(target["image_id"]), np.random.default_rng([self.seed, index, epoch, 1]))
            target.update({k: torch.as_tensor(v) for k, v in extra.items()})
        if self.flip and np.random.default_rng([self.seed, index, epoch]).random() < 0.5:
            image, target = hflip(image, target)
        return torch.from_numpy(image.copy()).permute(2, 0, 1).float().div(255.0), target


def hflip(image: np.ndarray, target: dict[str, torch.Tensor]) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """Mirror ``image`` ``(H, W, 3)`` left-right with its target's ``masks`` and boxes (:data:`BOX_KEYS`)."""
    width = image.shape[1]
    out = dict(target)
    for key in BOX_KEYS:
        if key in out:
            boxes = out[key].float().reshape(-1, 4)
            out[key] = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    if "masks" in out:
        out["masks"] = out["masks"].flip(-1)
    return image[:, ::-1], out


def collate(samples: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]]
            ) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """``(images, targets)`` lists of a batch (sizes may differ; the detector batches them itself)."""
    return [s[0] for s in samples], [s[1] for s in samples]
