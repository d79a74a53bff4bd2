"""Training the open-vocabulary detector from one config file (``ovbench train CONFIG`` with ``model.kind: detector``).

A detector run config has the sections of a segmenter run config (see
:mod:`ovbench.engine.segmenter_training`)::

    name: vild-text                       # the model's name in records and tables
    model: {kind: detector, clip: {...}, backbone: resnet50, ...}    # a DetectorSpec
    data: {protocol: synth-ovd, split: train, classes: base, flip: true}   # a DetectionDataSpec
    train: {iterations: ..., global_batch_size: ..., lr: ..., optimizer: sgd}  # a TrainConfig
    method: {kind: ezsd, ...}             # a detector training method's own settings (absent: plain)

Without a method the detector trains on the protocol's training boxes and masks with the frozen text
classifier of the training names (ViLD-text). A method (ViLD, EZSD) registers a factory with
:func:`register_detector_method`; it receives the :class:`DetectorTrainingSetup` (seeded network, CLIP,
training vocabulary, dataset) and returns :class:`DetectorTrainingParts`. To distil, it sets
``setup.dataset.extra_targets`` to a callable ``(image_id, rng) -> {"distill_boxes": (N, 4) xyxy pixels
of the original image, "distill_embeddings": (N, D) raw CLIP embeddings, "distill_weights": (N,)}``
(the dataset flips the boxes, the detector rescales them and adds ``loss_distill`` with weight
``model.distill_weight``); it may also wrap the loss or add training-only modules. The run writes the
engine's checkpoints and ``metrics.jsonl`` and, at the end, ``config.yaml`` and ``model.pt``
(:mod:`ovbench.models.detector.ov_detector`).
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import yaml

from ovbench.data.detection_training import DetectionTrainingSet, collate
from ovbench.engine.config import TrainConfig
from ovbench.engine.seeding import seed_everything
from ovbench.engine.segmenter_training import CLASS_SETS, apply_overrides, training_vocabulary
from ovbench.engine.trainer import train_run
from ovbench.errors import OvbenchError
from ovbench.models.clip import Clip
from ovbench.models.detector.model import OVMaskRCNN, build_detector, detector_loss
from ovbench.models.detector.ov_detector import save_detector_file
from ovbench.models.detector.spec import DetectorSpec
from ovbench.models.zoo import clip_from_config, resolve_weights
from ovbench.protocols import get_protocol

SECTIONS = ("name", "model", "data", "train", "method")


@dataclass(frozen=True)
class DetectionDataSpec:
    """Where the training boxes come from: ``protocol`` (a detection protocol), its ``split`` and
    ``classes`` set (``base``: open-vocabulary training; ``all``), and optional ``annotations`` (a COCO
    JSON) / ``images`` (a path template with ``{file_name}``) relative to the data root; ``flip``:
    random horizontal flips (probability 0.5)."""

    protocol: str
    split: str = "train"
    classes: str = "base"
    annotations: str | None = None
    images: str | None = None
    flip: bool = True

    def __post_init__(self) -> None:
        if self.classes not in CLASS_SETS:
            raise OvbenchError(f"data.classes must be one of {CLASS_SETS}, got {self.classes!r}")


@dataclass(frozen=True)
class DetectorRunConfig:
    name: str
    model: DetectorSpec
    data: DetectionDataSpec
    train: TrainConfig
    method: Mapping[str, Any] | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "DetectorRunConfig":
        unknown = sorted(set(raw) - set(SECTIONS))
        missing = sorted(set(SECTIONS[:4]) - set(raw))
        if unknown or missing:
            raise OvbenchError(f"a run config has the sections name, model, data, train (and optionally method); "
                               f"unknown: {unknown}, missing: {missing}")
        method = raw.get("method")
        if method is not None and (not isinstance(method, Mapping) or "kind" not in method):
            raise OvbenchError(f"the method section needs a 'kind' ({', '.join(detector_methods())}), got {method!r}")
        data_keys = {f.name for f in dataclasses.fields(DetectionDataSpec)}
        if not isinstance(raw["data"], Mapping) or set(raw["data"]) - data_keys:
            extra = sorted(set(raw["data"]) - data_keys) if isinstance(raw["data"], Mapping) else raw["data"]
            raise OvbenchError(f"unknown data key(s) {extra}; known: {sorted(data_keys)}")
        if "protocol" not in raw["data"]:
            raise OvbenchError("the data section needs a 'protocol' (a detection protocol id, e.g. synth-ovd)")
        return cls(name=str(raw["name"]), model=DetectorSpec.from_dict(raw["model"]),
                   data=DetectionDataSpec(**raw["data"]), train=TrainConfig.from_dict(raw["train"]),
                   method=dict(method) if method is not None else None)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "model": self.model.to_dict(), "data": dataclasses.asdict(self.data),
               "train": self.train.to_dict()}
        if self.method is not None:
            out["method"] = dict(self.method)
        return out


def _read_raw(path: Path) -> Any:
    if not path.is_file():
        raise OvbenchError(f"{path}: config not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise OvbenchError(f"{path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None


def is_detector_config(path: Path | str) -> bool:
    """True when the run config at ``path`` has ``model.kind: detector`` (False when unreadable)."""
    try:
        raw = _read_raw(Path(path))
    except OvbenchError:
        return False
    return isinstance(raw, dict) and isinstance(raw.get("model"), dict) and raw["model"].get("kind") == "detector"


def load_detector_run_config(path: Path | str, overrides: Sequence[str] = ()) -> DetectorRunConfig:
    """Read a detector run config (YAML or JSON) and apply ``section.key=value`` ``overrides``."""
    path = Path(path)
    raw = _read_raw(path)
    if not isinstance(raw, dict):
        raise OvbenchError(f"{path}: a run config is a mapping with sections name, model, data, train")
    return DetectorRunConfig.from_dict(apply_overrides(raw, overrides))


@dataclass
class DetectorTrainingSetup:
    """What every detector training method starts from: the seeded network (classifier set to ``text``),
    the CLIP, the training names' text embeddings ``(K, D)`` (L2-normalised), the training classes'
    protocol ids and names, the training set (None when built without data) and the folder relative
    paths start from."""

    run: DetectorRunConfig
    net: OVMaskRCNN
    clip: Clip
    text: torch.Tensor
    class_ids: list[int]
    names: list[str]
    dataset: DetectionTrainingSet | None
    base_dir: Path


@dataclass
class DetectorTrainingParts:
    """What a method hands the engine: ``module`` (optimised), ``loss_fn(module, batch)`` (batch =
    ``(images, targets)`` lists, see :mod:`ovbench.models.detector.model`) and ``detector()``, the plain
    :class:`OVMaskRCNN` that ``model.pt`` keeps."""

    module: torch.nn.Module
    loss_fn: Callable[[torch.nn.Module, Any], Mapping[str, torch.Tensor]]
    detector: Callable[[], OVMaskRCNN]


DetectorMethodFactory = Callable[[Mapping[str, Any], DetectorTrainingSetup], DetectorTrainingParts]
_METHODS: dict[str, DetectorMethodFactory] = {}
#: Packages whose import registers detector training methods (ViLD is a baseline, EZSD a method).
METHOD_PACKAGES = ("baselines", "methods")


def register_detector_method(kind: str) -> Callable[[DetectorMethodFactory], DetectorMethodFactory]:
    """Decorator: ``factory(method_section, setup) -> DetectorTrainingParts`` trains detector runs whose
    ``method.kind`` is ``kind``."""
    def wrap(factory: DetectorMethodFactory) -> DetectorMethodFactory:
        _METHODS[kind] = factory
        return factory
    return wrap


def detector_methods() -> list[str]:
    """The registered detector method kinds (after importing the method packages)."""
    for package in METHOD_PACKAGES:
        importlib.import_module(package)
    return sorted(_METHODS)


def plain_detector_training(setup: DetectorTrainingSetup) -> DetectorTrainingParts:
    """No method section: the detector with its own losses (plus ``loss_distill`` if the dataset's
    ``extra_targets`` give distillation regions)."""
    return DetectorTrainingParts(setup.net, detector_loss, lambda: setup.net)


def detector_training_parts(setup: DetectorTrainingSetup) -> DetectorTrainingParts:
    """The parts of ``setup.run``'s method (plain training when it has none)."""
    method = setup.run.method
    if method is None:
        return plain_detector_training(setup)
    kinds = detector_methods()
    if method["kind"] not in _METHODS:
        raise OvbenchError(f"unknown detector training method {method['kind']!r}; known: {', '.join(kinds)}")
    return _METHODS[method["kind"]](method, setup)


def _absolute_paths(spec: DetectorSpec, base_dir: Path) -> DetectorSpec:
    """The spec with relative CLIP-checkpoint and backbone-weight paths made absolute (for the model file)."""
    clip, weights = dict(spec.clip), spec.backbone_weights
    pretrained = clip.get("pretrained")
    if pretrained is not None and not str(pretrained).startswith("builtin:"):
        clip["pretrained"] = str(resolve_weights(pretrained, base_dir).resolve())
    if weights is not None:
        path = Path(weights).expanduser()
        weights = str((path if path.is_absolute() else base_dir / path).resolve())
    return dataclasses.replace(spec, clip=clip, backbone_weights=weights)


def build_detector_for_training(run: DetectorRunConfig, base_dir: Path | str,
                                data_root: Path | str | None = None) -> DetectorTrainingSetup:
    """Seeded network and text embeddings, and the training set when ``data_root`` is given."""
    seed_everything(run.train.seed)
    clip = clip_from_config(run.model.clip, base_dir)
    protocol = get_protocol(run.data.protocol, data_root)
    if protocol.task != "detection":
        raise OvbenchError(f"data.protocol {protocol.id} is a {protocol.task} protocol; a detector trains on a "
                           f"detection protocol (e.g. synth-ovd, coco-ovd)")
    class_ids, names = training_vocabulary(protocol, run.data.classes)
    net = build_detector(run.model, clip, names, base_dir)
    d = run.data
    dataset = None if data_root is None else DetectionTrainingSet(
        protocol, data_root, class_ids, split=d.split, annotations=d.annotations, images=d.images, flip=d.flip,
        seed=run.train.seed)
    return DetectorTrainingSetup(run, net, clip, net.predictor.text.clone(), class_ids, names, dataset, Path(base_dir))


def train_detector(run: DetectorRunConfig, data_root: Path | str, output_dir: Path | str, base_dir: Path | str = ".",
                   resume: bool = False, progress: bool = True) -> Path:
    """Train ``run`` on the data below ``data_root``; returns the path of the written ``model.pt``."""
    base_dir, output_dir = Path(base_dir), Path(output_dir)
    run = dataclasses.replace(run, model=_absolute_paths(run.model, base_dir),
                              train=dataclasses.replace(run.train, output_dir=str(output_dir)))
    setup = build_detector_for_training(run, base_dir, data_root)
    parts = detector_training_parts(setup)
    summary = train_run(run, parts.module, parts.loss_fn, setup.dataset, output_dir, collate, resume, progress)
    if summary is None:
        return output_dir / "model.pt"
    return save_detector_file(output_dir / "model.pt", parts.detector(), run.model, setup.names, summary)
