"""EZSD distillation regions (spec §4.2, §4.3): CLIP proposals turned into cached CLIP targets, and
the sampler the detector's training reads them with.

Per training image (:func:`image_regions`):

1. CLIP proposals (:func:`methods.ezsd.proposals.clip_proposals`: dense anchors, log C - H over the
   full vocabulary, NMS 0.7, top 1000);
2. drop those with IoU >= 0.3 to any **base** GT box (:func:`drop_gt_overlaps`). Only base boxes
   are ever read: EZAD's scripts filter with whatever the annotation file holds (novel boxes
   included on COCO/LVIS, spec §4.2 ⚠); a zero-shot-annotation re-implementation must not;
3. in ranking order, embed each survivor with a 1.2x square crop and classify it over the full
   vocabulary (softmax of ``100 * cos``); with the base filter (on by default, as on COCO) drop
   those whose arg-max class is a base class (:func:`keep_regions`); keep the first 300;
4. store each kept region's raw (un-normalised) CLIP embedding, box, max-softmax confidence, arg-max
   category and proposal score, plus the raw embedding of every base GT box (1.2x crop).

Cache layout: ``OUT/manifest.json`` (CLIP name and digest, settings, vocabulary, counts; written
atomically, ``complete`` once every image is done) and ``OUT/regions/<image_id>.npz`` per image
(written atomically; a rerun with the same settings skips the images already done).

:class:`RegionCache` reads it back; :meth:`RegionCache.sample` draws 200 indices with replacement
from the first 200 regions (``select_fixed_subset``), weights = confidences, and
:meth:`RegionCache.gt_features` matches GT features to GT boxes by the smallest L1 box distance
(weight 1). Boxes are in original image pixels, unflipped.

Command: ``python -m methods.ezsd.regions --data-root WORLD --clip-name tiny-vit
--clip-weights builtin:tiny-vit-synth --out DIR [--stride 16 --sides 16 32 64 128]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torchvision.ops import box_iou
from tqdm import tqdm

from methods.ezsd.crops import BoxAnnotations
from methods.ezsd.proposals import classify_boxes, clip_proposals
from methods.ezsd.renorm import TEMPLATE, prompt_embeddings
from ovbench.cli import run_script
from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip
from ovbench.models.zoo import resolve_weights
from ovbench.records.store import atomic_write, atomic_write_json

SCHEMA = "ezsd.regions/1"
MANIFEST = "manifest.json"
#: The detector's ``select_fixed_subset``: regions sampled from per image (spec §4.3).
FIXED_SUBSET = 200
#: Arrays of one image's ``.npz``.
ARRAYS = ("boxes", "embeddings", "confidences", "category_ids", "scores",
          "gt_boxes", "gt_embeddings", "gt_category_ids", "counts")


@dataclass(frozen=True)
class RegionSettings:
    """Proposal and region settings; defaults are the spec's COCO ones (1333x800 images)."""

    stride: int = 32
    sides: tuple[float, ...] = (32, 64, 128, 256, 512)
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    nms_iou: float = 0.7
    top_k: int = 1000
    gt_iou: float = 0.3
    base_filter: bool = True
    keep: int = 300
    crop_scale: float = 1.2
    template: str = TEMPLATE
    batch: int = 100

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.keep < 1 or self.batch < 1:
            raise OvbenchError(f"top_k ({self.top_k}), keep ({self.keep}) and batch ({self.batch}) must be >= 1")
        if not (0 < self.nms_iou <= 1 and 0 < self.gt_iou <= 1):
            raise OvbenchError(f"nms_iou ({self.nms_iou}) and gt_iou ({self.gt_iou}) must be in (0, 1]")


def drop_gt_overlaps(boxes: torch.Tensor, base_gt_boxes: torch.Tensor, iou_threshold: float = 0.3) -> torch.Tensor:
    """Indices (int64, ascending: ranking order kept) of the ``boxes`` ``(K, 4)`` whose IoU with
    every base GT box ``(G, 4)`` is below ``iou_threshold``."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    gt = torch.as_tensor(base_gt_boxes, dtype=torch.float32).reshape(-1, 4)
    if not len(gt) or not len(boxes):
        return torch.arange(len(boxes))
    return torch.nonzero(box_iou(boxes, gt).max(dim=1).values < iou_threshold).flatten()


def keep_regions(labels: torch.Tensor, is_base: torch.Tensor, base_filter: bool = True, keep: int = 300) -> torch.Tensor:
    """Indices (int64, ascending) of the first ``keep`` regions, of arg-max class indices ``labels``
    ``(K,)``, that survive the base filter (drop those with ``is_base[label]``; ``is_base`` bool
    ``(C,)``) if ``base_filter``."""
    survivors = torch.arange(len(labels))
    if base_filter:
        survivors = survivors[~is_base[labels]]
    return survivors[:max(keep, 0)]


@dataclass
class ImageRegions:
    """One image's cached targets. ``M`` regions best first, ``G`` base GT boxes, ``D`` the CLIP width.

    ``boxes`` ``(M, 4)`` / ``gt_boxes`` ``(G, 4)``: xyxy float32, original image pixels;
    ``embeddings`` ``(M, D)`` / ``gt_embeddings`` ``(G, D)``: raw CLIP image embeddings (1.2x crops),
    float32, not normalised; ``confidences`` ``(M,)``: max softmax; ``category_ids`` ``(M,)``:
    arg-max category; ``scores`` ``(M,)``: the proposal's log C - H; ``counts`` ``(3,)``: anchors,
    proposals and proposals away from the base GT of the image.
    """

    boxes: np.ndarray
    embeddings: np.ndarray
    confidences: np.ndarray
    category_ids: np.ndarray
    scores: np.ndarray
    gt_boxes: np.ndarray
    gt_embeddings: np.ndarray
    gt_category_ids: np.ndarray
    counts: np.ndarray

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **{k: getattr(self, k) for k in ARRAYS})
        atomic_write(path, lambda f: f.write(buffer.getvalue()))

    @classmethod
    def load(cls, path: Path) -> "ImageRegions":
        if not path.is_file():
            raise OvbenchError(f"{path}: region file missing; rerun `python -m methods.ezsd.regions` with the same --out")
        with np.load(path) as data:
            return cls(**{k: data[k] for k in ARRAYS})


def image_regions(clip: Clip, image: np.ndarray, base_gt_boxes: np.ndarray, base_gt_category_ids: np.ndarray,
                  text_emb: torch.Tensor, category_ids: Sequence[int], is_base: torch.Tensor,
                  settings: RegionSettings) -> ImageRegions:
    """The distillation regions of one RGB ``image`` ``(H, W, 3)`` (module docstring, steps 1-4).

    ``text_emb`` ``(C, D)``: the full vocabulary's normalised text embeddings, class ``c`` being
    category ``category_ids[c]``, ``is_base[c]`` whether it is a base class; ``base_gt_boxes``
    ``(G, 4)`` xyxy: the image's base-class GT boxes (never novel ones).
    """
    proposals, anchors = clip_proposals(clip, image, text_emb, settings.stride, settings.sides, settings.ratios,
                                        settings.nms_iou, settings.top_k, settings.batch)
    away = drop_gt_overlaps(proposals.boxes, torch.as_tensor(base_gt_boxes), settings.gt_iou)
    chosen, embeddings, confidences, labels = [], [], [], []
    kept = 0
    for chunk in away.split(settings.batch):            # in ranking order, until `keep` are kept
        if kept >= settings.keep:
            break
        emb, probs = classify_boxes(clip, image, proposals.boxes[chunk], text_emb, settings.crop_scale, settings.batch)
        conf, label = probs.max(dim=1)
        sel = keep_regions(label, is_base, settings.base_filter, settings.keep - kept)
        chosen.append(chunk[sel])
        embeddings.append(emb[sel])
        confidences.append(conf[sel])
        labels.append(label[sel])
        kept += len(sel)
    gt_emb, _ = classify_boxes(clip, image, torch.as_tensor(base_gt_boxes), text_emb, settings.crop_scale,
                               settings.batch)
    index = torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.int64)
    ids = torch.as_tensor(list(category_ids))
    return ImageRegions(
        boxes=proposals.boxes[index].numpy().astype(np.float32),
        embeddings=(torch.cat(embeddings) if embeddings else torch.zeros((0, clip.embed_dim))).numpy(),
        confidences=(torch.cat(confidences) if confidences else torch.zeros(0)).numpy().astype(np.float32),
        category_ids=ids[torch.cat(labels)].numpy() if labels else np.zeros(0, np.int64),
        scores=proposals.scores[index].numpy().astype(np.float32),
        gt_boxes=np.asarray(base_gt_boxes, np.float32).reshape(-1, 4),
        gt_embeddings=gt_emb.numpy(),
        gt_category_ids=np.asarray(base_gt_category_ids, np.int64),
        counts=np.asarray([anchors, len(proposals.boxes), len(away)], np.int64))


def _manifest_key(manifest: dict[str, Any]) -> dict[str, Any]:
    """What must match for a rerun to reuse a cache, as JSON values (tuples become lists)."""
    return json.loads(json.dumps({k: manifest.get(k) for k in ("schema", "clip", "annotations", "settings",
                                                               "vocabulary")}))


def build_region_cache(clip: Clip, annotations: BoxAnnotations, out: Path | str, settings: RegionSettings,
                       limit: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Write the region cache of ``annotations``' images (the first ``limit`` by id, or all) to
    ``out`` and return the manifest. Images already cached under the same settings are skipped;
    a cache made with other settings, CLIP or annotations is refused."""
    out = Path(out)
    category_ids = annotations.class_ids()
    base_ids = annotations.class_ids("base")
    names = annotations.names(category_ids)
    image_ids = sorted(annotations.images)[:limit]
    manifest: dict[str, Any] = {
        "schema": SCHEMA, "clip": {"name": clip.name, "digest": clip.digest},
        "annotations": str(annotations.path), "settings": dataclasses.asdict(settings),
        "vocabulary": {"category_ids": category_ids, "names": names, "base": base_ids},
    }
    if (out / MANIFEST).is_file():
        old = json.loads((out / MANIFEST).read_text())
        if _manifest_key(old) != _manifest_key(manifest):
            raise OvbenchError(f"{out}: holds regions made with another CLIP, annotation file or settings; "
                               f"pass a fresh --out")
    atomic_write_json(out / MANIFEST, {**manifest, "complete": False})
    with torch.no_grad():
        text_emb = prompt_embeddings(clip, names, settings.template).cpu()
    is_base = torch.tensor([cid in base_ids for cid in category_ids])
    start = time.perf_counter()
    for image_id in tqdm(image_ids, desc="ezsd regions", disable=not progress):
        path = out / "regions" / f"{image_id}.npz"
        if path.is_file():
            continue
        boxes, cats = annotations.gt(image_id, base_ids)
        image_regions(clip, annotations.image(image_id), boxes, cats, text_emb, category_ids, is_base,
                      settings).save(path)
    seconds = time.perf_counter() - start
    manifest.update(embed_dim=int(text_emb.shape[1]), images=image_ids,
                    counts=region_counts(out, image_ids, base_ids), seconds=round(seconds, 1), complete=True)
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def region_counts(out: Path, image_ids: Sequence[int], base_ids: Sequence[int]) -> dict[str, Any]:
    """Totals and per-image statistics of the cached images (read back from their files)."""
    per_image = [ImageRegions.load(out / "regions" / f"{i}.npz") for i in image_ids]
    counts = np.stack([r.counts for r in per_image]) if per_image else np.zeros((0, 3), np.int64)
    kept = np.asarray([len(r.boxes) for r in per_image])
    labels = np.concatenate([r.category_ids for r in per_image]) if per_image else np.zeros(0, np.int64)
    confidences = np.concatenate([r.confidences for r in per_image]) if per_image else np.zeros(0)

    def mean(x: np.ndarray) -> float:
        return round(float(x.mean()), 2) if len(x) else 0.0

    return {
        "images": len(per_image), "anchors_per_image": mean(counts[:, 0]),
        "proposals_per_image": mean(counts[:, 1]), "away_from_base_gt_per_image": mean(counts[:, 2]),
        "regions": int(kept.sum()), "regions_per_image": mean(kept),
        "regions_min": int(kept.min()) if len(kept) else 0,
        "images_below_fixed_subset": int((kept < FIXED_SUBSET).sum()),
        "gt_boxes": int(sum(len(r.gt_boxes) for r in per_image)),
        "mean_confidence": round(float(confidences.mean()), 4) if len(confidences) else 0.0,
        "regions_predicted_base": int(np.isin(labels, base_ids).sum()),
        "regions_by_category": {int(c): int(n) for c, n in zip(*np.unique(labels, return_counts=True))},
    }


@dataclass
class RegionSample:
    """One draw of distillation targets: ``boxes`` ``(n, 4)`` xyxy (original pixels),
    ``embeddings`` ``(n, D)`` raw CLIP embeddings, ``weights`` ``(n,)`` (confidences or 1.0 for GT)."""

    boxes: np.ndarray
    embeddings: np.ndarray
    weights: np.ndarray


def nearest_by_l1(queries: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """For each query box ``(Q, 4)``, the index ``(Q,)`` of the ``stored`` box ``(S, 4)`` at the
    smallest L1 distance (the first on ties)."""
    queries = np.asarray(queries, np.float64).reshape(-1, 4)
    stored = np.asarray(stored, np.float64).reshape(-1, 4)
    if len(queries) and not len(stored):
        raise OvbenchError(f"{len(queries)} GT boxes to match but no cached GT features for this image")
    return np.abs(queries[:, None, :] - stored[None, :, :]).sum(axis=2).argmin(axis=1) if len(queries) \
        else np.zeros(0, np.int64)


class RegionCache:
    """Reader of a region cache written by :func:`build_region_cache`."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise OvbenchError(f"{path}: no region cache here; make one with `python -m methods.ezsd.regions`")
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("schema") != SCHEMA or not self.manifest.get("complete"):
            raise OvbenchError(f"{self.root}: incomplete or foreign region cache (schema "
                               f"{self.manifest.get('schema')!r}); rerun `python -m methods.ezsd.regions`")

    @property
    def image_ids(self) -> list[int]:
        return list(self.manifest["images"])

    def load(self, image_id: int) -> ImageRegions:
        return ImageRegions.load(self.root / "regions" / f"{image_id}.npz")

    def sample(self, image_id: int, n: int = FIXED_SUBSET, rng: np.random.Generator | None = None,
               fixed_subset: int = FIXED_SUBSET) -> RegionSample:
        """``n`` regions drawn uniformly **with replacement** from the image's first
        ``fixed_subset``; weights are their confidences. Empty arrays if the image has none."""
        rng = rng if rng is not None else np.random.default_rng()
        regions = self.load(image_id)
        pool = min(len(regions.boxes), fixed_subset)
        pick = rng.choice(pool, size=n, replace=True) if pool else np.zeros(0, np.int64)
        return RegionSample(regions.boxes[pick], regions.embeddings[pick], regions.confidences[pick])

    def gt_features(self, image_id: int, gt_boxes: np.ndarray) -> RegionSample:
        """The cached GT embeddings matched to ``gt_boxes`` ``(G, 4)`` xyxy (original pixels) by the
        smallest L1 box distance, weight 1.0 each."""
        regions = self.load(image_id)
        match = nearest_by_l1(gt_boxes, regions.gt_boxes)
        return RegionSample(np.asarray(gt_boxes, np.float32).reshape(-1, 4), regions.gt_embeddings[match],
                            np.ones(len(match), np.float32))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m methods.ezsd.regions",
                                     description="EZSD: CLIP proposals and cached distillation targets per image")
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--annotations", default="detection/instances_train.json",
                        help="training annotation file relative to --data-root (only its base boxes are read)")
    parser.add_argument("--clip-name", required=True, help="open_clip architecture, e.g. tiny-vit")
    parser.add_argument("--clip-weights", required=True,
                        help="the (re-normalised) CLIP checkpoint: a path or builtin:NAME")
    parser.add_argument("--out", type=Path, required=True)
    defaults = RegionSettings()
    parser.add_argument("--stride", type=int, default=defaults.stride)
    parser.add_argument("--sides", type=float, nargs="+", default=list(defaults.sides))
    parser.add_argument("--ratios", type=float, nargs="+", default=list(defaults.ratios))
    parser.add_argument("--nms-iou", type=float, default=defaults.nms_iou)
    parser.add_argument("--top-k", type=int, default=defaults.top_k)
    parser.add_argument("--gt-iou", type=float, default=defaults.gt_iou)
    parser.add_argument("--keep", type=int, default=defaults.keep)
    parser.add_argument("--no-base-filter", action="store_true", help="keep proposals predicted as base (LVIS)")
    parser.add_argument("--batch", type=int, default=defaults.batch, help="crops per CLIP forward pass")
    parser.add_argument("--limit", type=int, help="only the first N images by id")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = RegionSettings(stride=args.stride, sides=tuple(args.sides), ratios=tuple(args.ratios),
                              nms_iou=args.nms_iou, top_k=args.top_k, gt_iou=args.gt_iou,
                              base_filter=not args.no_base_filter, keep=args.keep, batch=args.batch)
    annotations = BoxAnnotations.load(args.data_root, args.annotations)
    clip = Clip(args.clip_name, pretrained=resolve_weights(args.clip_weights), device=args.device)
    manifest = build_region_cache(clip, annotations, args.out, settings, args.limit, not args.no_progress)
    print(json.dumps(manifest["counts"], indent=1))
    print(f"wrote {len(manifest['images'])} images' regions to {args.out} in {manifest['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main, "python -m methods.ezsd.regions"))
