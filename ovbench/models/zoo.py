"""The model zoo: a registry from a model config's ``kind`` to the function that builds it.

A model config is a mapping with a ``kind`` (``segmenter``, ``two-stage``, ``maskclip``, …) and the
kind's own keys. Builders live with the models (``baselines/``, ``methods/``) and register
themselves on import with :func:`register_model`; :func:`build_model` imports those packages first.
CLIP weights named ``builtin:NAME`` resolve to the checkpoints shipped in ``ovbench/models/weights``.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from ovbench.errors import OvbenchError
from ovbench.models.api import SemanticSegmenter
from ovbench.models.clip import Clip

WEIGHTS_DIR = Path(__file__).with_name("weights")
#: Packages whose import registers model builders.
MODEL_PACKAGES = ("ovbench.models.segmenter.ov_segmenter", "baselines", "methods")
#: Packages whose ``*/configs/*.yaml`` are the named configs (:func:`named_configs`).
CONFIG_PACKAGES = ("baselines", "methods")

Builder = Callable[[Mapping[str, Any], Path], SemanticSegmenter]
_BUILDERS: dict[str, Builder] = {}


def register_model(kind: str) -> Callable[[Builder], Builder]:
    """Decorator: ``builder(config, base_dir) -> SemanticSegmenter`` handles configs of ``kind``;
    relative paths in the config are relative to ``base_dir``."""
    def wrap(builder: Builder) -> Builder:
        _BUILDERS[kind] = builder
        return builder
    return wrap


def model_kinds() -> list[str]:
    """Every registered kind, after importing the model packages."""
    _import_model_packages()
    return sorted(_BUILDERS)


def _import_model_packages() -> None:
    for package in MODEL_PACKAGES:
        importlib.import_module(package)


def build_model(config: Mapping[str, Any], base_dir: Path | str = ".") -> SemanticSegmenter:
    """The model ``config`` describes (see the module docstring)."""
    _import_model_packages()
    kind = config.get("kind")
    if kind not in _BUILDERS:
        raise OvbenchError(f"unknown model kind {kind!r}; known: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[kind](config, Path(base_dir))


def resolve_weights(spec: str | None, base_dir: Path | str = ".") -> Path | None:
    """``None`` -> None (random weights); ``builtin:NAME`` -> the shipped ``weights/NAME.pt``;
    anything else -> a path, relative to ``base_dir`` unless absolute."""
    if spec is None:
        return None
    if spec.startswith("builtin:"):
        path = WEIGHTS_DIR / f"{spec[len('builtin:'):]}.pt"
        if not path.is_file():
            known = ", ".join(f"builtin:{p.stem}" for p in sorted(WEIGHTS_DIR.glob("*.pt")))
            raise OvbenchError(f"unknown built-in weights {spec!r}; shipped: {known}")
        return path
    path = Path(spec).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def clip_from_config(config: Mapping[str, Any], base_dir: Path | str = ".", device: str = "cpu") -> Clip:
    """A :class:`Clip` from ``{"name": ARCH, "pretrained": PATH | "builtin:NAME" | null, "seed": 0}``."""
    unknown = set(config) - {"name", "pretrained", "seed"}
    if unknown or "name" not in config:
        raise OvbenchError(f"clip config needs 'name' and optionally 'pretrained', 'seed'; got {dict(config)}")
    return Clip(config["name"], pretrained=resolve_weights(config.get("pretrained"), base_dir),
                device=device, seed=int(config.get("seed", 0)))


def read_model_config(path: Path | str) -> dict[str, Any]:
    """A model config file: a YAML/JSON mapping with a ``kind``."""
    path = Path(path)
    if not path.is_file():
        raise OvbenchError(f"{path}: model not found; pass a model.pt from `ovbench train` or a model config")
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise OvbenchError(f"{path}: not a YAML/JSON model config ({str(e).splitlines()[0]})") from None
    if not isinstance(config, dict) or "kind" not in config:
        raise OvbenchError(f"{path}: a model config is a mapping with a 'kind' ({', '.join(model_kinds())})")
    return config


def load_model(path: Path | str, device: str = "cpu") -> SemanticSegmenter:
    """A model from a model file written by ``ovbench train`` (``.pt``) or a model config file;
    relative paths inside either are relative to the file's folder."""
    from ovbench.models.segmenter.ov_segmenter import load_model_file  # registers itself via this module
    path = Path(path)
    if path.suffix == ".pt":
        return load_model_file(path, base_dir=path.parent, device=device)
    return build_model(read_model_config(path), path.parent)


def named_configs() -> dict[str, Path]:
    """``<package>/<config>`` -> path, for every ``configs/*.yaml`` of a baseline or method package
    (``baselines/two_stage/configs/synth-ov.yaml`` is ``two-stage/synth-ov``): run configs and model
    configs alike."""
    out = {}
    for package in CONFIG_PACKAGES:
        root = Path(importlib.import_module(package).__file__).resolve().parent
        for path in sorted(root.glob("*/configs/*.yaml")):
            out[f"{path.parent.parent.name.replace('_', '-')}/{path.stem}"] = path
    return out
