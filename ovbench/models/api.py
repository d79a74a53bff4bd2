"""The inference interface every open-vocabulary semantic segmenter exposes to ``ovbench predict``
and the demo, whatever it is made of (a trained segmenter, a two-stage pipeline, training-free CLIP)."""
from __future__ import annotations

import abc
from typing import Sequence

import numpy as np


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
