"""What ``ovbench profile MODEL`` times: MODEL resolved to a :class:`~ovbench.models.api.StagedSegmenter`.

MODEL is one of
- a named config (``ovbench profile --list``: ``gkc/coco-panoptic-rn50``, ``two-stage/synth-ov``, …)
  or the path of a run config (``model:`` section) or model config (``kind:``) — built with random
  weights unless ``weights="configured"`` (speed does not depend on weights);
- a model file written by ``ovbench train`` (``model.pt``), with its trained weights;
- ``module:factory``, an importable callable returning an ``nn.Module`` that maps float images
  ``(B, 3, H, W)`` in [0, 1] to class logits ``(B, K, h, w)`` (:class:`ModuleSegmenter`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from ovbench.errors import OvbenchError
from ovbench.models.api import Batch, SemanticSegmenter, StagedSegmenter, check_image
from ovbench.models.zoo import build_model, load_model, named_configs, read_model_config

WEIGHTS = ("random", "configured")


@dataclass
class Target:
    """A model to time, its record name, and where it came from (``source`` goes into the record)."""

    name: str
    model: StagedSegmenter
    source: dict[str, Any] = field(default_factory=dict)


class ModuleSegmenter(StagedSegmenter):
    """An ``nn.Module`` from ``module:factory`` as a segmenter with a fixed output vocabulary.

    ``preprocess``: uint8 image -> float ``(1, 3, H, W)`` in [0, 1]; ``forward``: the module;
    ``postprocess``: bilinear upsampling of the ``(B, K, h, w)`` logits to the image, arg-max. The
    vocabulary is the module's own: :meth:`set_vocabulary` leaves it alone.
    """

    def __init__(self, module: nn.Module, name: str) -> None:
        self.module, self.name = module.eval(), name

    def set_vocabulary(self, class_names: Sequence[Sequence[str]]) -> None:
        """The module's classes are fixed at construction; the vocabulary is not used."""

    def preprocess(self, image: np.ndarray) -> Batch:
        check_image(image, self.name)
        x = torch.from_numpy(np.array(image, copy=True)).to(self.device).permute(2, 0, 1)[None]
        return {"images": x.float().div_(255.0)}

    def forward(self, inputs: Batch) -> Batch:
        return {"logits": self.module(inputs["images"])}

    def postprocess(self, outputs: Batch, image_size: tuple[int, int]) -> list[np.ndarray]:
        logits = outputs["logits"]
        if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
            raise OvbenchError(f"{self.name}: end-to-end timing needs the module to return class logits "
                               f"(B, K, h, w); it returned {type(logits).__name__} "
                               f"{tuple(getattr(logits, 'shape', ()))}; time --measure model-only instead")
        up = F.interpolate(logits.float(), size=tuple(image_size), mode="bilinear", align_corners=False)
        return list(up.argmax(1).cpu().numpy().astype(np.int64))

    def towers(self) -> dict[str, list[nn.Module]]:
        return {"image": [self.module], "text": []}

    def to(self, device: torch.device | str) -> "ModuleSegmenter":
        self.module.to(device)
        return self

    def clear_text_cache(self) -> None:
        """No text encoder, nothing cached."""


def random_weights(config: Any, base_dir: Path) -> Any:
    """``config`` (a model config) with every CLIP ``pretrained`` and trunk file set to None and every
    segmenter ``checkpoint`` replaced by its architecture (``spec``, read from the model file when
    the config gives none): the same models with random weights."""
    from ovbench.models.segmenter.ov_segmenter import read_model_file
    if isinstance(config, list):
        return [random_weights(v, base_dir) for v in config]
    if not isinstance(config, Mapping):
        return config
    out = {k: random_weights(v, base_dir) for k, v in config.items()}
    for key in ("pretrained", "trunk_weights"):
        if key in out:
            out[key] = None
    if out.get("kind") == "segmenter" and "checkpoint" in out:
        checkpoint = Path(str(out.pop("checkpoint"))).expanduser()
        if "spec" not in out:
            checkpoint = checkpoint if checkpoint.is_absolute() else base_dir / checkpoint
            if not checkpoint.is_file():
                raise OvbenchError(f"{checkpoint}: the segmenter's model file is missing and its config has no "
                                   f"'spec' (a run config) to build it with random weights; add one")
            out["spec"] = {k: v for k, v in read_model_file(checkpoint)["spec"].items() if k != "kind"}
        if isinstance(out["spec"], Mapping):
            out["spec"] = random_weights(out["spec"], base_dir)
    return out


def _from_factory(spec: str, name: str | None) -> Target:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise OvbenchError(f"{spec}: cannot import the factory ({e}); give module:function on the Python path") from None
    module = factory()
    if not isinstance(module, nn.Module):
        raise OvbenchError(f"{spec}: the factory returned {type(module).__name__}, not a torch.nn.Module")
    return Target(name or attr, ModuleSegmenter(module, name or attr), {"factory": spec})


def _from_config(path: Path, weights: str, name: str | None) -> Target:
    from ovbench.models.segmenter.ov_segmenter import random_segmenter, spec_from_config
    raw = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml", ".json") else None
    if isinstance(raw, Mapping) and "kind" not in raw and isinstance(raw.get("model"), Mapping):
        if weights != "random":
            raise OvbenchError(f"{path}: a run config has no trained weights; profile it with random weights "
                               f"or pass the run's model.pt")
        spec, run_name = spec_from_config(str(path), path.parent)
        model = random_segmenter(spec, path.parent, name=name or run_name)
        return Target(model.name, model, {"config": str(path), "weights": "random"})
    config = read_model_config(path)
    if weights == "random":
        config = random_weights(config, path.parent)
    model = build_model(config, path.parent)
    if name:
        model.name = name
    return Target(model.name, model, {"config": str(path), "weights": weights})


def resolve_target(spec: str, weights: str = "random", name: str | None = None) -> Target:
    """MODEL (see the module docstring) -> :class:`Target` on the CPU."""
    if weights not in WEIGHTS:
        raise OvbenchError(f"--weights {weights!r}: choose from {', '.join(WEIGHTS)}")
    named = named_configs()
    path = named.get(spec, Path(spec).expanduser())
    if not path.exists() and ":" in spec and spec not in named:
        target = _from_factory(spec, name)
    elif not path.is_file():
        raise OvbenchError(f"{spec}: not a named config ({', '.join(named)}), a config or model.pt file, or "
                           f"module:factory")
    elif path.suffix == ".pt":
        model = load_model(path)
        if name:
            model.name = name
        target = Target(model.name, model, {"model": str(path), "weights": "trained"})
    else:
        target = _from_config(path, weights, name)
    if not isinstance(target.model, StagedSegmenter):
        kind = type(target.model).__name__ if isinstance(target.model, SemanticSegmenter) else "object"
        raise OvbenchError(f"{spec}: {kind} does not expose preprocess/forward/postprocess (StagedSegmenter); "
                           f"ovbench profile times staged models only")
    return target
