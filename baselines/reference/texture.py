"""``pixel-texture``: multinomial logistic regression on a pixel's colour and local texture
statistics (local mean and spread of each channel over a few windows, gradient energies)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.optimize import minimize

from baselines.reference.common import PixelPredictor, sample_training_pixels
from ovbench.errors import OvbenchError
from ovbench.protocols import Protocol

WINDOWS = (3, 7, 15)
ENERGY_WINDOWS = (5, 11)


def pixel_features(image: np.ndarray) -> np.ndarray:
    """(H*W, F) float32 features: RGB; per window the local mean and std of RGB; horizontal and
    vertical gradient energy and Laplacian energy of the grey image, smoothed over two windows."""
    x = image.astype(np.float32) / 255.0
    feats = [x]
    for w in WINDOWS:
        mean = ndimage.uniform_filter(x, size=(w, w, 1), mode="reflect")
        sq = ndimage.uniform_filter(x * x, size=(w, w, 1), mode="reflect")
        feats += [mean, np.sqrt(np.maximum(sq - mean * mean, 0))]
    grey = x.mean(2)
    gx = ndimage.sobel(grey, axis=1, mode="reflect")
    gy = ndimage.sobel(grey, axis=0, mode="reflect")
    lap = ndimage.laplace(grey, mode="reflect")
    for w in ENERGY_WINDOWS:
        for e in (gx * gx, gy * gy, lap * lap):
            feats.append(np.sqrt(np.maximum(ndimage.uniform_filter(e, size=w, mode="reflect"), 0))[..., None])
    f = np.concatenate(feats, axis=2)
    return f.reshape(-1, f.shape[2])


def _loss_grad(params: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray, k: int, l2: float
               ) -> tuple[float, np.ndarray]:
    d = x.shape[1]
    wmat = params.reshape(d, k).astype(np.float32)
    logits = x @ wmat
    logits -= logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    n = w.sum()
    loss = -(w * logp[np.arange(len(y)), y]).sum() / n + 0.5 * l2 * (wmat[:-1] ** 2).sum()
    p = np.exp(logp)
    p[np.arange(len(y)), y] -= 1
    grad = (x.T @ (p * w[:, None])).astype(np.float64) / n
    grad[:-1] += l2 * wmat[:-1]
    return float(loss), grad.ravel()


class PixelTextureClassifier(PixelPredictor):
    """Linear softmax over standardised pixel features, fitted with L-BFGS on sampled pixels.

    Classes are weighted by the inverse square root of their pixel frequency so that small
    things are not drowned by large stuff regions. Trained on base classes only.
    """

    name = "pixel-texture"

    def __init__(self, pixels_per_image: int = 200, max_iter: int = 100, l2: float = 1e-4,
                 seed: int = 0) -> None:
        self.pixels_per_image = pixels_per_image
        self.max_iter = max_iter
        self.l2 = l2
        self.seed = seed
        self.classes_: np.ndarray | None = None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.weights_: np.ndarray | None = None

    def fit(self, data_root: Path, protocol: Protocol) -> "PixelTextureClassifier":
        x, y_ids = sample_training_pixels(data_root, protocol, pixel_features, self.pixels_per_image, self.seed)
        classes, y = np.unique(y_ids, return_inverse=True)
        self.classes_ = classes
        self.mean_, self.scale_ = x.mean(0), x.std(0) + 1e-6
        xb = np.concatenate([(x - self.mean_) / self.scale_, np.ones((len(x), 1))], axis=1).astype(np.float32)
        freq = np.bincount(y, minlength=len(classes)).astype(np.float64)
        sample_w = (1.0 / np.sqrt(freq))[y].astype(np.float32)
        k = len(classes)
        res = minimize(_loss_grad, np.zeros(xb.shape[1] * k), args=(xb, y, sample_w, k, self.l2),
                       jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter})
        self.weights_ = res.x.reshape(xb.shape[1], k)
        return self

    def _logits(self, image: np.ndarray) -> np.ndarray:
        """Class logits ``(H*W, K)`` float32 of an HxWx3 uint8 image, K = ``len(classes_)``."""
        if self.classes_ is None:
            raise OvbenchError(f"{self.name}: call fit() or load() before predict()")
        image = self._check_image(image)
        f = (pixel_features(image) - self.mean_.astype(np.float32)) / self.scale_.astype(np.float32)
        return f @ self.weights_[:-1].astype(np.float32) + self.weights_[-1].astype(np.float32)

    def predict(self, image: np.ndarray) -> np.ndarray:
        return self.classes_[self._logits(image).argmax(1)].astype(np.uint8).reshape(image.shape[:2])

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """Softmax class probabilities ``(H, W, K)`` float32 of each pixel; channel k is class
        ``classes_[k]`` and the arg-max over k is :meth:`predict`'s label."""
        logits = self._logits(image)
        p = np.exp(logits - logits.max(1, keepdims=True))
        return (p / p.sum(1, keepdims=True)).reshape(*image.shape[:2], -1)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return ({"pixels_per_image": self.pixels_per_image, "max_iter": self.max_iter, "l2": self.l2,
                 "seed": self.seed},
                {"classes": self.classes_, "mean": self.mean_, "scale": self.scale_,
                 "weights": self.weights_})

    @classmethod
    def _from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "PixelTextureClassifier":
        self = cls(pixels_per_image=meta["pixels_per_image"], max_iter=meta["max_iter"], l2=meta["l2"],
                   seed=meta["seed"])
        self.classes_, self.mean_ = arrays["classes"], arrays["mean"]
        self.scale_, self.weights_ = arrays["scale"], arrays["weights"]
        return self
