"""EZSD's detector training (spec ``ezsd.md`` §4.3, §5, §12.5-12.6) as ``ovbench train``'s
``method: {kind: ezsd, ...}``.

The detector is the shared one with EZSD's settings (the ``model`` section: box head ``convfc-301212``,
learnable temperature, unnormalised background, semantic class-agnostic regression, λ = 1 COCO / 0.5
LVIS). The method feeds its distillation loss from a region cache of :mod:`methods.ezsd.regions`: per
training image and iteration,

- the image's base GT boxes (the dataset's current ones, original pixels, before any flip), each with
  the cached CLIP embedding of the GT box at the smallest L1 box distance and weight 1 (``use_gt``);
- ``proposals_per_image`` CLIP proposals drawn with replacement from the image's first 200 cached
  regions, weighted by their CLIP max-softmax confidence (``weighting: confidence``) or 1 (``uniform``)
  (``use_proposals``).

The detector rescales the weights to mean 1 per image and flips the boxes with the image, so
``loss_distill`` = λ (1/N) Σ_j w_j ||r_j − v̂_j||_1 (§5.3). ``text_clip`` replaces the classifier's
text embeddings by another CLIP checkpoint's (same architecture as ``model.clip``); since ``model.pt``
keeps ``model.clip`` for the test vocabulary, the run then also writes ``OUTPUT/model.yaml``, a model
config predicting with ``text_clip``'s text tower (``ovbench predict --model OUTPUT/model.yaml``).

Ablation switches (spec §9): re-normalised vs raw CLIP (point ``regions`` / ``model.clip`` /
``text_clip`` at artefacts built with either), CLIP proposals (``use_proposals``), GT regions
(``use_gt``), proposal weighting (``weighting``), semantic regression (``model.semantic_regression``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
import yaml

from ovbench.data.detection_training import DetectionTrainingSet
from ovbench.engine.detector_training import (DetectorTrainingParts, DetectorTrainingSetup, plain_detector_training,
                                              register_detector_method)
from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip
from ovbench.models.zoo import clip_from_config
from ovbench.records.store import atomic_write_text

if TYPE_CHECKING:
    from methods.ezsd.regions import RegionCache

WEIGHTINGS = ("confidence", "uniform")
#: CLIP proposals per image and iteration (spec §4.3), as many as :data:`methods.ezsd.regions.FIXED_SUBSET`.
PROPOSALS_PER_IMAGE = 200
#: How to (re)build a region cache, for error messages.
REGIONS_COMMAND = ("python -m methods.ezsd.regions --data-root DATA --clip-name {name} --clip-weights {weights} "
                   "--out DIR")


@dataclass(frozen=True)
class EZSDSettings:
    """The ``method`` section of an EZSD run config (defaults: EZSD's COCO recipe, spec §4.3).

    ``regions``: a region cache folder (``python -m methods.ezsd.regions``; relative to the config
    file's folder unless absolute), or None for no distillation. ``proposals_per_image``: CLIP
    proposals drawn per image and iteration, with replacement, from the first 200 cached.
    ``use_gt`` / ``use_proposals``: distil the base GT boxes (weight 1) / the CLIP proposals.
    ``weighting``: a proposal's weight is its CLIP confidence or 1. ``text_clip``: a CLIP checkpoint
    (path relative to the config's folder, or ``builtin:NAME``) of ``model.clip``'s architecture whose
    text tower embeds the training names instead of ``model.clip``'s (None: ``model.clip``).
    """

    kind: str = "ezsd"
    regions: str | None = None
    proposals_per_image: int = PROPOSALS_PER_IMAGE
    use_gt: bool = True
    use_proposals: bool = True
    weighting: str = "confidence"
    text_clip: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.proposals_per_image < 1:
            problems.append(f"proposals_per_image must be >= 1, got {self.proposals_per_image}")
        if self.weighting not in WEIGHTINGS:
            problems.append(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.regions is not None and not (self.use_gt or self.use_proposals):
            problems.append("use_gt and use_proposals are both false: nothing to distil (set regions: null)")
        if problems:
            raise OvbenchError("invalid ezsd method section: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EZSDSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OvbenchError(f"unknown ezsd method key(s) {unknown}; known: {sorted(known)}")
        return cls(**data)


def dataset_gt_boxes(dataset: DetectionTrainingSet) -> dict[int, np.ndarray]:
    """Image id -> the training GT boxes ``(G, 4)`` xyxy float32 in original pixels, as
    :meth:`DetectionTrainingSet.read` yields them (clamped to the image, empty ones dropped)."""
    out = {}
    for entry in dataset.images:
        image_id = int(entry["id"])
        boxes = np.asarray([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in dataset.annotations[image_id])],
                           np.float32).reshape(-1, 4)
        width, height = float(entry.get("width", np.inf)), float(entry.get("height", np.inf))
        boxes = np.minimum(np.maximum(boxes, 0.0), np.asarray([width, height, width, height], np.float32))
        out[image_id] = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    return out


@dataclass(frozen=True)
class EZSDRegions:
    """The dataset's ``extra_targets``: one image's distillation regions for one iteration.

    ``gt_boxes``: image id -> its training GT boxes ``(G, 4)`` (original pixels, unflipped; needed when
    ``settings.use_gt``); ``settings`` has ``use_gt`` or ``use_proposals`` on. Returns ``distill_boxes``
    ``(G + n, 4)`` float32 xyxy original pixels (GT first), ``distill_embeddings`` ``(G + n, D)`` raw CLIP
    embeddings and ``distill_weights`` ``(G + n,)`` (1 for GT; the dataset flips the boxes).
    """

    cache: RegionCache
    settings: EZSDSettings
    gt_boxes: Mapping[int, np.ndarray]

    def __call__(self, image_id: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        parts = []
        if self.settings.use_gt:
            gt, cached = self.gt_boxes[image_id], len(self.cache.load(image_id).gt_boxes)
            if len(gt) > cached:
                raise OvbenchError(f"{self.cache.root}: image {image_id} has {len(gt)} training GT boxes but {cached} "
                                   f"cached GT features; was the cache built from this annotation file?")
            region = self.cache.gt_features(image_id, gt)
            parts.append((region.boxes, region.embeddings, region.weights))
        if self.settings.use_proposals:
            region = self.cache.sample(image_id, self.settings.proposals_per_image, rng)
            weights = region.weights if self.settings.weighting == "confidence" else np.ones_like(region.weights)
            parts.append((region.boxes, region.embeddings, weights))
        boxes, embeddings, weights = (np.concatenate(column).astype(np.float32) for column in zip(*parts))
        return {"distill_boxes": torch.from_numpy(boxes), "distill_embeddings": torch.from_numpy(embeddings),
                "distill_weights": torch.from_numpy(weights)}


def _resolve(path: str, base_dir: Path) -> Path:
    folder = Path(path).expanduser()
    return folder if folder.is_absolute() else base_dir / folder


def text_clip_config(text_clip: str, setup: DetectorTrainingSetup) -> dict[str, Any]:
    """The clip config of checkpoint ``text_clip`` (a path made absolute, or ``builtin:NAME``), with the
    architecture of ``model.clip``."""
    weights = text_clip if text_clip.startswith("builtin:") else str(_resolve(text_clip, setup.base_dir).resolve())
    return {"name": setup.run.model.clip["name"], "pretrained": weights}


def open_cache(root: Path, teacher: Clip, dataset: DetectionTrainingSet | None, hint: str) -> RegionCache:
    """The region cache at ``root``, checked: embedded by ``teacher`` (the CLIP whose text embeddings the
    classifier uses, so that the distillation targets live in that space) and covering every image of
    ``dataset``; errors name the command ``hint`` that builds it."""
    # imported here so that `python -m methods.ezsd.regions` runs a module the package has not imported yet
    from methods.ezsd.regions import RegionCache

    if not (root / "manifest.json").is_file():
        raise OvbenchError(f"{root}: no EZSD region cache (manifest.json missing); build it with `{hint}`")
    cache = RegionCache(root)
    made_by = cache.manifest.get("clip", {})
    if (made_by.get("name"), made_by.get("digest")) != (teacher.name, teacher.digest):
        raise OvbenchError(f"{root}: regions embedded by CLIP {made_by.get('name')} (digest {made_by.get('digest')}) "
                           f"but the classifier's text comes from {teacher.name} (digest {teacher.digest}); "
                           f"point method.regions at a cache of that CLIP (`{hint}`), or model.clip / "
                           f"method.text_clip at the CLIP the cache was made with")
    if dataset is not None:
        ids = [int(entry["id"]) for entry in dataset.images]
        missing = [i for i in ids if not (root / "regions" / f"{i}.npz").is_file()]
        if missing:
            raise OvbenchError(f"{root}: no regions for {len(missing)} of the {len(ids)} training images "
                               f"(e.g. {missing[:5]}); build them with `{hint}` (the same --out resumes)")
    return cache


def write_prediction_config(setup: DetectorTrainingSetup, clip_config: Mapping[str, Any]) -> Path:
    """``OUTPUT/model.yaml``: the run's ``model.pt`` with ``clip_config``'s text tower for the test vocabulary."""
    path = Path(setup.run.train.output_dir) / "model.yaml"
    config = {"kind": "detector", "checkpoint": "model.pt", "clip": dict(clip_config), "name": setup.run.name}
    atomic_write_text(path, "# written by the ezsd method: predict with the text tower the classifier was "
                            "trained with (method.text_clip)\n" + yaml.safe_dump(config, sort_keys=False))
    return path


@register_detector_method("ezsd")
def ezsd_training(section: Mapping[str, Any], setup: DetectorTrainingSetup) -> DetectorTrainingParts:
    """EZSD's training parts (see the module docstring): plain detector training with the text of
    ``text_clip`` (when set) and the cached distillation regions as ``extra_targets`` (when ``regions``)."""
    settings = EZSDSettings.from_dict(section)
    teacher = setup.clip
    clip_config = text_clip_config(settings.text_clip, setup) if settings.text_clip is not None else None
    if clip_config is not None:
        teacher = clip_from_config(clip_config, setup.base_dir)
        setup.net.set_text(teacher.encode_text(setup.names, setup.run.model.template))
        setup.text = setup.net.predictor.text.clone()
    if settings.regions is not None:
        if settings.use_gt and setup.run.data.classes != "base":
            raise OvbenchError(f"the region cache holds base-class GT features only; train on data.classes: base "
                               f"(got {setup.run.data.classes!r}) or set method.use_gt: false")
        weights = setup.run.model.clip.get("pretrained") if settings.text_clip is None else settings.text_clip
        hint = REGIONS_COMMAND.format(name=teacher.name, weights=weights)
        cache = open_cache(_resolve(settings.regions, setup.base_dir), teacher, setup.dataset, hint)
        if setup.dataset is not None:
            gt = dataset_gt_boxes(setup.dataset) if settings.use_gt else {}
            setup.dataset.extra_targets = EZSDRegions(cache, settings, gt)
    if clip_config is not None and teacher.digest != setup.clip.digest:
        write_prediction_config(setup, clip_config)
    return plain_detector_training(setup)
