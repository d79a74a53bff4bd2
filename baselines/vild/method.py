"""ViLD (Gu et al., ICLR 2022) as a detector training method: ``method: {kind: vild, proposals: DIR}``.

The detector itself is the shared one with ViLD's settings (the ``model`` section of the configs: a
normalised background embedding, T = 100 fixed, class-agnostic, non-semantic regression, the
``convfc-420000`` box head with BatchNorm, distillation weight 0.5); ``model.ensemble: true`` makes it
ViLD-ensemble. The method feeds the distillation loss: each training image's cached proposals
(:mod:`baselines.vild.proposals`, built from a base-trained ViLD-text run) become its ``distill_boxes``
with their ensembled CLIP embeddings as targets and weight 1, so ``loss_distill`` is
λ (1/N) Σ_j ||r_j − v̂_j||_1 over the batch's regions (spec ``ezsd.md`` §10).

Settings: ``proposals`` the cache folder (relative to the config's folder unless absolute), or null to
train without distillation (ViLD-text, e.g. the base-trained detector the cache is built from:
``--set method.proposals=null``); ``max_regions`` (default 300, ViLD's ``max_num_rois``) the
best-ranked proposals used per image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from ovbench.engine.detector_training import (DetectorTrainingParts, DetectorTrainingSetup, plain_detector_training,
                                              register_detector_method)
from ovbench.errors import OvbenchError

if TYPE_CHECKING:
    from baselines.vild.proposals import ProposalCache

#: ViLD's distillation regions per image (``max_num_rois``).
MAX_REGIONS = 300


@dataclass(frozen=True)
class ViLDSettings:
    """The ``method`` section of a ViLD run config (``kind: vild``)."""

    proposals: str | None
    max_regions: int = MAX_REGIONS

    @classmethod
    def from_method(cls, method: Mapping[str, Any]) -> "ViLDSettings":
        unknown = sorted(set(method) - {"kind", "proposals", "max_regions"})
        if unknown or "proposals" not in method or method["proposals"] == "":
            raise OvbenchError(f"the vild method takes proposals (the cache folder of `python -m "
                               f"baselines.vild.proposals`, or null for ViLD-text) and max_regions; "
                               f"unknown: {unknown}, proposals: {method.get('proposals')!r}")
        proposals = None if method["proposals"] is None else str(method["proposals"])
        settings = cls(proposals, int(method.get("max_regions", MAX_REGIONS)))
        if settings.max_regions < 1:
            raise OvbenchError(f"method.max_regions must be >= 1, got {settings.max_regions}")
        return settings


@dataclass(frozen=True)
class CachedRegions:
    """The dataset's ``extra_targets``: an image's first ``max_regions`` cached proposals, weight 1 each."""

    cache: ProposalCache
    max_regions: int

    def __call__(self, image_id: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        boxes, embeddings = self.cache.load(image_id)
        boxes, embeddings = boxes[: self.max_regions], embeddings[: self.max_regions]
        return {"distill_boxes": torch.from_numpy(boxes), "distill_embeddings": torch.from_numpy(embeddings),
                "distill_weights": torch.ones(len(boxes))}


@register_detector_method("vild")
def vild_training(method: Mapping[str, Any], setup: DetectorTrainingSetup) -> DetectorTrainingParts:
    """Plain detector training plus the cached ViLD regions as distillation targets (none when
    ``proposals`` is null); a clear error when the cache was embedded by another CLIP than the run's or
    misses training images."""
    # imported here so that `python -m baselines.vild.proposals` runs a module not yet imported by the package
    from baselines.vild.proposals import ProposalCache

    settings = ViLDSettings.from_method(method)
    if settings.proposals is None:
        if setup.run.model.ensemble:
            raise OvbenchError("model.ensemble needs distillation regions to train its image branch; set "
                               "method.proposals to a ViLD proposal cache (or model.ensemble=false for ViLD-text)")
        return plain_detector_training(setup)
    folder = Path(settings.proposals).expanduser()
    cache = ProposalCache.open(folder if folder.is_absolute() else setup.base_dir / folder)
    cache.check_clip(setup.clip)
    if setup.dataset is not None:
        cache.check_images([int(entry["id"]) for entry in setup.dataset.images])
        setup.dataset.extra_targets = CachedRegions(cache, settings.max_regions)
    return plain_detector_training(setup)
