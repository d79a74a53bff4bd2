"""The inference interface every open-vocabulary semantic segmenter exposes to ``ovbench predict``
and the demo, whatever it is made of (a trained segmenter, a two-stage pipeline, training-free CLIP).

:class:`SemanticSegmenter` is the minimum: a vocabulary in, label maps out. :class:`StagedSegmenter`
splits :meth:`~SemanticSegmenter.predict` into the three stages ``ovbench profile`` times apart —
``preprocess`` (decoded image -> model input tensors on the model's device), ``forward`` (the
model proper, on pre-loaded tensors) and ``postprocess`` (model output -> label map at the
original size) — and names the modules of its image and text towers.
"""
from __future__ import annotations

import abc
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ovbench.errors import OvbenchError

#: Model input or output of a staged segmenter: batch-first tensors, plus plain values (sizes) that
#: are equal for every image of a batch.
Batch = dict[str, Any]


class SemanticSegmenter(abc.ABC):
    """An open-vocabulary semantic segmenter: a vocabulary in, one label map per image out."""

    #: Short model name, used in records and tables.
    name: str = "model"

    @abc.abstractmethod
    def set_vocabulary(self, class_names: Sequence[Sequence[str]]) -> None:
        """The K test classes in protocol order, each as one or more names (the first is canonical;
        a class's score is the max over its names). Label ``k`` of :meth:`predict` means class ``k``."""

    @abc.abstractmethod
    def predict(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB ``(H, W, 3)`` -> int64 label map ``(H, W)`` with values in ``0 .. K-1``."""

    def counters(self) -> dict[str, int]:
        """Cumulative work counters since construction (e.g. ``clip_image_forwards``); ``{}`` if none."""
        return {}


class StagedSegmenter(SemanticSegmenter):
    """A segmenter whose prediction is ``postprocess(forward(preprocess(image)))``.

    ``preprocess`` gives a :data:`Batch` with batch size 1; batches of same-size images are the
    per-key concatenation of their inputs (:func:`stack_inputs`) and ``forward`` accepts them.
    """

    @abc.abstractmethod
    def preprocess(self, image: np.ndarray) -> Batch:
        """uint8 RGB ``(H, W, 3)`` -> the model's input (resized, normalised, padded) on its device."""

    @abc.abstractmethod
    def forward(self, inputs: Batch) -> Batch:
        """The model on pre-loaded inputs of batch size B; the output stays on the model's device."""

    @abc.abstractmethod
    def postprocess(self, outputs: Batch, image_size: tuple[int, int]) -> list[np.ndarray]:
        """``forward``'s output -> B int64 label maps of ``image_size`` ``(H, W)`` pixels."""

    @abc.abstractmethod
    def towers(self) -> Mapping[str, Sequence[nn.Module]]:
        """``{"image": modules run per image, "text": modules that embed the vocabulary}``; a module
        shared by both counts once, under ``image``."""

    @abc.abstractmethod
    def to(self, device: torch.device | str) -> "StagedSegmenter":
        """Move every module and cached tensor to ``device``; returns ``self``."""

    @abc.abstractmethod
    def clear_text_cache(self) -> None:
        """Forget cached text embeddings, so that the next :meth:`set_vocabulary` runs the text encoder."""

    @property
    def device(self) -> torch.device:
        """Where :meth:`forward` runs: the device of the image tower's first parameter."""
        for module in self.towers()["image"]:
            for p in module.parameters():
                return p.device
        return torch.device("cpu")

    @torch.no_grad()
    def predict(self, image: np.ndarray) -> np.ndarray:
        check_image(image, self.name)
        return self.postprocess(self.forward(self.preprocess(image)), image.shape[:2])[0]


def check_image(image: Any, owner: str) -> None:
    """A clear error unless ``image`` is a uint8 ``(H, W, 3)`` array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise OvbenchError(f"{owner}: expected a uint8 (H, W, 3) image, got "
                           f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")


def stack_inputs(batches: Sequence[Batch]) -> Batch:
    """Concatenate single-image inputs along dim 0 per key; non-tensor values must agree."""
    out: Batch = {}
    for key, first in batches[0].items():
        values = [b[key] for b in batches]
        if isinstance(first, torch.Tensor):
            if any(v.shape[1:] != first.shape[1:] for v in values):
                raise OvbenchError(f"cannot batch inputs whose {key!r} shapes differ ({tuple(first.shape)} vs "
                                   f"{[tuple(v.shape) for v in values if v.shape[1:] != first.shape[1:]][0]}); "
                                   f"batch images of one size")
            out[key] = torch.cat(values, dim=0)
        elif isinstance(first, Mapping):
            out[key] = stack_inputs(values)
        elif all(v == first for v in values):
            out[key] = first
        else:
            raise OvbenchError(f"cannot batch inputs whose {key!r} differ ({values[:2]}); batch images of one size")
    return out
