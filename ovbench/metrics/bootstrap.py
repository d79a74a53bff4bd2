"""Bootstrap confidence intervals and paired tests over images.

Both resample *images* with replacement (seeded): each resample's per-class statistics are the
sum of the chosen images' statistics, and the metric is recomputed from those sums — exactly as
if the dataset had been those images. ``per_image`` arrays have shape ``(N, 3, K)`` (see
:mod:`ovbench.metrics.confusion`).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ovbench.metrics.semseg import miou_batch

Metric = Callable[[np.ndarray], np.ndarray]


def _resample_counts(num_images: int, num_boot: int, seed: int) -> np.ndarray:
    """``(num_boot, num_images)`` multiplicities of a with-replacement resample of the images."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_images, np.full(num_images, 1.0 / num_images), size=num_boot)


def _resampled_stats(per_image: np.ndarray, counts: np.ndarray, chunk: int = 100) -> Any:
    n = per_image.shape[0]
    flat = per_image.reshape(n, -1).astype(np.float64)
    for start in range(0, counts.shape[0], chunk):
        w = counts[start:start + chunk].astype(np.float64)
        yield (w @ flat).reshape(w.shape[0], *per_image.shape[1:])


def miou_metric(class_ids: Sequence[int] | None = None) -> Metric:
    """A batched metric: detectron2 mIoU over ``class_ids`` (all classes when ``None``)."""
    return lambda stats: miou_batch(stats, class_ids)


def bootstrap_ci(per_image: np.ndarray, metrics: dict[str, Metric], num_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Percentile bootstrap intervals: ``{name: [lo, hi], ..., "n_boot", "seed", "level"}``.

    A resample in which a metric is undefined (no ground truth of its classes) is skipped for
    that metric; an interval is ``None`` if every resample was.
    """
    if per_image.shape[0] == 0:
        raise ValueError("bootstrap needs at least one image")
    counts = _resample_counts(per_image.shape[0], num_boot, seed)
    values = {name: [] for name in metrics}
    for stats in _resampled_stats(per_image, counts):
        for name, fn in metrics.items():
            values[name].append(fn(stats))
    tail = (1 - level) / 2 * 100
    out: dict[str, Any] = {}
    for name, chunks in values.items():
        v = np.concatenate(chunks)
        v = v[np.isfinite(v)]
        out[name] = [float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))] if v.size else None
    out.update(n_boot=num_boot, seed=seed, level=level)
    return out


def paired_bootstrap(per_image_a: np.ndarray, per_image_b: np.ndarray, metric: Metric,
                     num_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Paired bootstrap of ``metric(A) - metric(B)`` over the same images.

    Both arrays are ``(N, 3, K)`` for the same images in the same order. Returns the observed
    difference, its percentile interval, and a two-sided p-value for "no difference":
    ``2 * min(P(diff <= 0), P(diff >= 0))`` over the resamples, each proportion with the usual
    +1 correction ``(count + 1) / (B + 1)`` so that it is never exactly 0, capped at 1.
    """
    if per_image_a.shape != per_image_b.shape:
        raise ValueError(f"paired bootstrap needs equal shapes, got {per_image_a.shape} and {per_image_b.shape}")
    observed = float(metric(per_image_a.sum(axis=0)[None])[0] - metric(per_image_b.sum(axis=0)[None])[0])
    counts = _resample_counts(per_image_a.shape[0], num_boot, seed)
    diffs = np.concatenate([metric(sa) - metric(sb) for sa, sb in
                            zip(_resampled_stats(per_image_a, counts), _resampled_stats(per_image_b, counts))])
    diffs = diffs[np.isfinite(diffs)]
    tail = (1 - level) / 2 * 100
    b = diffs.size
    p = float(min(1.0, 2 * min(((diffs <= 0).sum() + 1) / (b + 1), ((diffs >= 0).sum() + 1) / (b + 1)))) if b else None
    return {"difference": observed,
            "ci": [float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))] if diffs.size else None,
            "p_value": p, "n_boot": num_boot, "seed": seed, "level": level}
