"""Instance JSON: COCO for the image splits, YouTube-VIS for the videos (RLE masks of the visible part of each thing)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from ovbench.protocols import ClassInfo
from ovbench.synth.appearance import THING_IDS


def categories(classes: Sequence[ClassInfo]) -> list[dict[str, Any]]:
    """The thing classes, with the protocol's class id as the COCO category id."""
    return [{"id": classes[i].id, "name": classes[i].name, "synonyms": list(classes[i].synonyms),
             "partition": classes[i].partition, "supercategory": "thing"} for i in THING_IDS]


def instance_annotations(instances: np.ndarray, instance_classes: Sequence[int], image_id: int,
                         first_id: int, keep: Callable[[int], bool]) -> list[dict[str, Any]]:
    """One annotation per visible instance whose class passes ``keep`` (ids from ``first_id``)."""
    out = []
    for k, cid in enumerate(instance_classes, start=1):
        if not keep(cid):
            continue
        m = instances == k
        if not m.any():
            continue
        ys, xs = np.nonzero(m)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        out.append({"id": first_id + len(out), "image_id": image_id, "category_id": int(cid),
                    "bbox": [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)],
                    "area": float(m.sum()), "iscrowd": 0,
                    "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"]}})
    return out


def document(split: str, images: list[dict[str, Any]], annotations: list[dict[str, Any]],
             classes: Sequence[ClassInfo]) -> dict[str, Any]:
    note = ("base-class instances only (novel things are present in the images but not annotated)"
            if split == "train" else "every thing instance")
    return {"info": {"description": f"ovbench synthetic world, {split} split: {note}", "version": "1"},
            "licenses": [], "images": images, "annotations": annotations,
            "categories": categories(classes)}


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def track_annotation(instance_maps: Sequence[np.ndarray], track_id: int, category_id: int, video_id: int,
                     annotation_id: int) -> dict[str, Any]:
    """One YouTube-VIS annotation: the track's RLE, area and box per frame, ``None`` where it is hidden."""
    segs, areas, boxes = [], [], []
    for inst in instance_maps:
        m = inst == track_id
        if not m.any():
            segs.append(None), areas.append(None), boxes.append(None)
            continue
        ys, xs = np.nonzero(m)
        segs.append(_rle(m))
        areas.append(int(m.sum()))
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)])
    return {"id": annotation_id, "video_id": video_id, "category_id": int(category_id), "segmentations": segs,
            "areas": areas, "bboxes": boxes, "iscrowd": 0, "length": 1}


def video_document(split: str, videos: list[dict[str, Any]], annotations: list[dict[str, Any]],
                   classes: Sequence[ClassInfo]) -> dict[str, Any]:
    """The YouTube-VIS-format instance file of a video split (one annotation per track)."""
    note = ("base-class tracks only (novel things are present in the frames but not annotated)"
            if split == "train" else "every thing track")
    return {"info": {"description": f"ovbench synthetic world, {split} videos: {note}", "version": "1"},
            "licenses": [], "videos": videos, "annotations": annotations, "categories": categories(classes)}
