"""``pixel-colour``: Gaussian naive Bayes on a pixel's RGB alone (no context at all)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from baselines.reference.common import PixelPredictor, sample_training_pixels
from ovbench.errors import OvbenchError
from ovbench.protocols import Protocol


class PixelColourClassifier(PixelPredictor):
    """Per class, an axis-aligned Gaussian over RGB plus the class's pixel frequency as prior.

    Trained on base-class pixels only, so it can only ever predict base classes.
    """

    name = "pixel-colour"

    def __init__(self, pixels_per_image: int = 2000, seed: int = 0) -> None:
        self.pixels_per_image = pixels_per_image
        self.seed = seed
        self.classes_: np.ndarray | None = None
        self.means_: np.ndarray | None = None
        self.vars_: np.ndarray | None = None
        self.log_prior_: np.ndarray | None = None

    def fit(self, data_root: Path, protocol: Protocol) -> "PixelColourClassifier":
        x, y = sample_training_pixels(data_root, protocol, lambda im: im.reshape(-1, 3),
                                      self.pixels_per_image, self.seed)
        classes = np.unique(y)
        self.classes_ = classes
        self.means_ = np.stack([x[y == c].mean(0) for c in classes])
        self.vars_ = np.stack([x[y == c].var(0) for c in classes]) + 4.0  # a floor of 2 grey levels
        counts = np.array([(y == c).sum() for c in classes], np.float64)
        self.log_prior_ = np.log(counts / counts.sum())
        return self

    def predict(self, image: np.ndarray) -> np.ndarray:
        if self.classes_ is None:
            raise OvbenchError(f"{self.name}: call fit() or load() before predict()")
        image = self._check_image(image)
        x = image.reshape(-1, 1, 3).astype(np.float32)
        mu, var = self.means_.astype(np.float32)[None], self.vars_.astype(np.float32)[None]
        ll = -0.5 * (((x - mu) ** 2) / var).sum(-1) - 0.5 * np.log(var).sum(-1) + self.log_prior_[None]
        return self.classes_[ll.argmax(1)].astype(np.uint8).reshape(image.shape[:2])

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return ({"pixels_per_image": self.pixels_per_image, "seed": self.seed},
                {"classes": self.classes_, "means": self.means_, "vars": self.vars_,
                 "log_prior": self.log_prior_})

    @classmethod
    def _from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "PixelColourClassifier":
        self = cls(pixels_per_image=meta["pixels_per_image"], seed=meta["seed"])
        self.classes_, self.means_ = arrays["classes"], arrays["means"]
        self.vars_, self.log_prior_ = arrays["vars"], arrays["log_prior"]
        return self
