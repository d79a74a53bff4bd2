"""Training a segmenter from one config file (``ovbench train CONFIG``).

A run config has four sections and an optional fifth::

    name: naive-finetune            # the model's name in records and tables
    model: {kind: segmenter, ...}   # a SegmenterSpec
    data: {protocol: synth-ov, split: train, classes: base, crop_size: 128, ...}   # a DataSpec
    train: {iterations: ..., global_batch_size: ..., lr: ...}                      # a TrainConfig
    method: {kind: gkc, ...}        # a training method's own settings (absent: plain set losses)

Training methods (GKC's text diversification and distillation, …) register with
:func:`register_training_method` from the ``methods`` package; a method supplies the module to
optimise (the segmenter plus its training-only heads) and the loss function, and gives back the
plain segmenter for ``model.pt`` — inference never runs a method's training-only parts.

The training vocabulary is the protocol's ``classes`` (``base``: open-vocabulary training, the novel
classes stay unlabelled; ``all``: every class, e.g. COCO-Panoptic for cross-dataset evaluation), one
canonical name per class. The run writes the engine's checkpoints and ``metrics.jsonl`` and, at the
end, ``model.pt`` (see :mod:`ovbench.models.segmenter.ov_segmenter`) and ``config.yaml``.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import yaml

from ovbench.data.training import SemsegTrainingSet, collate
from ovbench.engine.config import TrainConfig
from ovbench.engine.seeding import seed_everything
from ovbench.engine.trainer import train_run
from ovbench.errors import OvbenchError
from ovbench.models.segmenter.losses import Segment, loss_kind
from ovbench.models.segmenter.model import Segmenter
from ovbench.models.segmenter.ov_segmenter import save_model_file
from ovbench.models.clip import Clip
from ovbench.models.segmenter.spec import SegmenterSpec, build_segmenter, normalize_images
from ovbench.models.zoo import clip_from_config, resolve_weights
from ovbench.protocols import Protocol, get_protocol

CLASS_SETS = ("base", "all")


@dataclass(frozen=True)
class DataSpec:
    """Where the training images come from and how they are augmented (pixels, scale factors)."""

    protocol: str
    split: str = "train"
    classes: str = "base"
    crop_size: int = 512
    scale_range: tuple[float, float] = (0.8, 1.2)
    flip: bool = True
    images: str | None = None
    labels: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale_range", tuple(float(s) for s in self.scale_range))
        if self.classes not in CLASS_SETS:
            raise OvbenchError(f"data.classes must be one of {CLASS_SETS}, got {self.classes!r}")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise OvbenchError(f"data.scale_range must be [min, max] with 0 < min <= max, got {self.scale_range}")
        if self.crop_size < 1:
            raise OvbenchError(f"data.crop_size must be >= 1, got {self.crop_size}")


@dataclass(frozen=True)
class RunConfig:
    name: str
    model: SegmenterSpec
    data: DataSpec
    train: TrainConfig
    method: Mapping[str, Any] | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "RunConfig":
        unknown = sorted(set(raw) - {"name", "model", "data", "train", "method"})
        missing = sorted({"name", "model", "data", "train"} - set(raw))
        if unknown or missing:
            raise OvbenchError(f"a run config has the sections name, model, data, train (and optionally "
                               f"method); unknown: {unknown}, missing: {missing}")
        method = raw.get("method")
        if method is not None and (not isinstance(method, Mapping) or "kind" not in method):
            raise OvbenchError(f"the method section needs a 'kind' ({', '.join(training_methods())}), got {method!r}")
        if raw["model"].get("kind", "segmenter") != "segmenter":
            raise OvbenchError(f"ovbench train trains kind 'segmenter' models, got {raw['model'].get('kind')!r}")
        data_keys = {f.name for f in dataclasses.fields(DataSpec)}
        if set(raw["data"]) - data_keys:
            raise OvbenchError(f"unknown data key(s) {sorted(set(raw['data']) - data_keys)}; known: {sorted(data_keys)}")
        return cls(name=str(raw["name"]), model=SegmenterSpec.from_dict(raw["model"]), data=DataSpec(**raw["data"]),
                   train=TrainConfig.from_dict(raw["train"]), method=dict(method) if method is not None else None)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self.data)
        data["scale_range"] = list(self.data.scale_range)
        out = {"name": self.name, "model": self.model.to_dict(), "data": data, "train": self.train.to_dict()}
        if self.method is not None:
            out["method"] = dict(self.method)
        return out


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``section.key=value`` assignments (values parsed as YAML) applied to a copy of ``raw``."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    for item in overrides:
        key, sep, value = item.partition("=")
        path = key.split(".")
        if not sep or len(path) < 2:
            raise OvbenchError(f"override {item!r} must read section.key=value (e.g. train.iterations=100)")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise OvbenchError(f"override {item!r}: {part!r} is not a section")
        node[path[-1]] = yaml.safe_load(value)
    return out


def load_run_config(path: Path | str, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a run config (YAML or JSON) and apply ``overrides``."""
    path = Path(path)
    if not path.is_file():
        raise OvbenchError(f"{path}: config not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise OvbenchError(f"{path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise OvbenchError(f"{path}: a run config is a mapping with sections name, model, data, train")
    return RunConfig.from_dict(apply_overrides(raw, overrides))


def training_vocabulary(protocol: Protocol, classes: str) -> tuple[list[int], list[str]]:
    """(class ids, canonical names) of the protocol's ``classes`` set, in protocol order."""
    chosen = [c for c in protocol.classes if classes == "all" or c.partition == "base"]
    if not chosen:
        raise OvbenchError(f"protocol {protocol.id} has no {classes!r} classes to train on")
    return [c.id for c in chosen], [c.name for c in chosen]


def segments_from_labels(labels: torch.Tensor, ignore: int = 255) -> list[list[Segment]]:
    """Per image of ``labels`` ``(B, H, W)`` (vocabulary indices, ``ignore`` elsewhere): one
    ``(class, mask (H, W) bool)`` per class present."""
    out = []
    for label in labels:
        classes = [int(c) for c in torch.unique(label) if int(c) != ignore]
        out.append([(c, label == c) for c in classes])
    return out


def weighted_by_kind(raw: dict[str, torch.Tensor], weights: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """The criterion's per-output losses weighted and summed per kind (``loss_ce`` = Σ over outputs
    of weight · ``loss_ce[_i]``); their sum is the criterion's ``loss_total``."""
    out: dict[str, torch.Tensor] = {}
    for name, value in raw.items():
        if name != "loss_total":
            kind = loss_kind(name)
            out[kind] = out.get(kind, 0) + weights[kind] * value
    return out


class SegmenterLoss:
    """``loss_fn(model, batch)`` for the engine: deep-supervised set losses, weighted and summed over
    the decoder outputs per loss type (``loss_ce``, ``loss_mask``, ``loss_dice``; their sum is the
    criterion's ``loss_total``)."""

    def __init__(self, text: torch.Tensor, normalization: str) -> None:
        self.text, self.normalization = text, normalization

    def __call__(self, model: torch.nn.Module, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        images, labels = batch[0], batch[1]
        out = model(normalize_images(images, self.normalization), self.text.to(images.device))
        criterion = (model.module if hasattr(model, "module") else model).criterion
        return weighted_by_kind(criterion(out, segments_from_labels(labels)), criterion.weights)


@dataclass
class TrainingSetup:
    """What every training method starts from: the seeded network, the CLIP (text tower; the trunk
    when the spec says so), the frozen text embeddings ``(K, D)`` of the training names, the
    training classes' protocol ids and names, the training set and the folder relative paths start from."""

    run: RunConfig
    net: Segmenter
    clip: Clip
    text: torch.Tensor
    class_ids: list[int]
    names: list[str]
    dataset: SemsegTrainingSet | None
    base_dir: Path


@dataclass
class TrainingParts:
    """What a training method hands the engine: ``module`` (optimised; the segmenter's parameter names
    must keep their prefixes, e.g. ``trunk.``), ``loss_fn(module, batch)`` and ``segmenter()``, the
    plain :class:`Segmenter` that ``model.pt`` keeps."""

    module: torch.nn.Module
    loss_fn: Callable[[torch.nn.Module, Any], dict[str, torch.Tensor]]
    segmenter: Callable[[], Segmenter]


MethodFactory = Callable[[Mapping[str, Any], TrainingSetup], TrainingParts]
_METHODS: dict[str, MethodFactory] = {}
#: Packages whose import registers training methods.
METHOD_PACKAGES = ("methods",)


def register_training_method(kind: str) -> Callable[[MethodFactory], MethodFactory]:
    """Decorator: ``factory(method_section, setup) -> TrainingParts`` trains runs whose ``method.kind`` is ``kind``."""
    def wrap(factory: MethodFactory) -> MethodFactory:
        _METHODS[kind] = factory
        return factory
    return wrap


def training_methods() -> list[str]:
    """The registered method kinds (after importing the method packages)."""
    for package in METHOD_PACKAGES:
        importlib.import_module(package)
    return sorted(_METHODS)


def plain_training(setup: TrainingSetup) -> TrainingParts:
    """No method section: the segmenter with its set losses (the naive fine-tune)."""
    return TrainingParts(setup.net, SegmenterLoss(setup.text, setup.run.model.normalization), lambda: setup.net)


def training_parts(setup: TrainingSetup) -> TrainingParts:
    """The parts of ``setup.run``'s method (plain training when it has none)."""
    method = setup.run.method
    if method is None:
        return plain_training(setup)
    kinds = training_methods()
    if method["kind"] not in _METHODS:
        raise OvbenchError(f"unknown training method {method['kind']!r}; known: {', '.join(kinds)}")
    return _METHODS[method["kind"]](method, setup)


def _absolute_clip(spec: SegmenterSpec, base_dir: Path) -> SegmenterSpec:
    """The spec with a relative CLIP checkpoint path made absolute (so that the model file finds it)."""
    pretrained = spec.clip.get("pretrained")
    if pretrained is None or str(pretrained).startswith("builtin:"):
        return spec
    return dataclasses.replace(spec, clip={**spec.clip, "pretrained": str(resolve_weights(pretrained, base_dir).resolve())})


def build_for_training(run: RunConfig, base_dir: Path, data_root: Path | str | None = None) -> TrainingSetup:
    """Seeded network and text embeddings, and the training set when ``data_root`` is given."""
    seed_everything(run.train.seed)
    clip = clip_from_config(run.model.clip, base_dir)
    net = build_segmenter(run.model, clip, base_dir)
    protocol = get_protocol(run.data.protocol)
    class_ids, names = training_vocabulary(protocol, run.data.classes)
    d = run.data
    dataset = None if data_root is None else SemsegTrainingSet(
        protocol, data_root, class_ids, split=d.split, crop_size=d.crop_size, scale_range=d.scale_range,
        flip=d.flip, images=d.images, labels=d.labels, seed=run.train.seed)
    return TrainingSetup(run, net, clip, clip.encode_text(names, run.model.template), class_ids, names, dataset,
                         Path(base_dir))


def train_segmenter(run: RunConfig, data_root: Path | str, output_dir: Path | str, base_dir: Path | str = ".",
                    resume: bool = False, progress: bool = True) -> Path:
    """Train ``run`` on the data below ``data_root``; returns the path of the written ``model.pt``."""
    base_dir, output_dir = Path(base_dir), Path(output_dir)
    run = dataclasses.replace(run, model=_absolute_clip(run.model, base_dir),
                              train=dataclasses.replace(run.train, output_dir=str(output_dir)))
    setup = build_for_training(run, base_dir, data_root)
    parts = training_parts(setup)
    summary = train_run(run, parts.module, parts.loss_fn, setup.dataset, output_dir, collate, resume, progress)
    if summary is None:
        return output_dir / "model.pt"
    return save_model_file(output_dir / "model.pt", parts.segmenter(), run.model, setup.names, summary)
