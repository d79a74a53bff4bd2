"""``ovbench profile``: time one model (and optionally a baseline, interleaved) over the declared
settings and turn the measurements into speed records.

Per (input size, vocabulary size) and per measured unit (model-only, end-to-end) every target is
timed in one :func:`~ovbench.profiling.timing.measure` call, so that with ``--vs`` the model and the
baseline alternate window by window in one process. Beside latency the record holds, per setting,
peak CUDA memory of one call, FLOPs per image of ``forward`` (with the operators FlopCounterMode
could not count) and the CLIP image forwards per image; per model its parameters (image / text
towers), the text encoder's cost with and without the embedding cache, and for models with
``max_proposals`` (the two-stage baseline) latency against the number of masks.
"""
from __future__ import annotations

import io
import statistics
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ovbench.models.api import Batch, StagedSegmenter, stack_inputs
from ovbench.profiling.environment import device_class, device_name, environment_card
from ovbench.profiling.flops import count_flops
from ovbench.profiling.settings import Setting, numerics
from ovbench.profiling.targets import ModuleSegmenter, Target
from ovbench.profiling.timing import Timing, measure, ratio_summary
from ovbench.records.provenance import code_version, hardware, utc_timestamp
from ovbench.records.store import SPEED_SCHEMA

#: How many times the text encoder is timed per vocabulary size (cold and cached each).
TEXT_REPEATS = 3


@dataclass(frozen=True)
class ProfileOptions:
    """What to measure: the settings' axes, the statistics' sizes and the extras."""

    inputs: Sequence[tuple[int, int]] = ((640, 640),)
    vocabs: Sequence[int] = (150,)
    class_names: Sequence[Sequence[str]] | None = None     # a protocol's vocabulary instead of ``vocabs``
    batch: int = 1
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    device: str = "cpu"
    measured: Sequence[str] = ("model-only", "end-to-end")
    iterations: int = 100
    repeats: int = 3
    warmup: int = 10
    flops: bool = True
    mask_sweep: Sequence[int] = (1, 10, 25, 50, 100)
    seed: int = 0


def vocabulary(size: int) -> list[list[str]]:
    """``size`` distinct one-name classes (``"class 0"``, …): a vocabulary of a given size."""
    return [[f"class {i}"] for i in range(size)]


def parameter_counts(model: StagedSegmenter) -> dict[str, int]:
    """Parameters of the image and text towers (a tensor shared by both counts once, as image)."""
    seen: set[int] = set()
    counts = {}
    for tower in ("image", "text"):
        total = 0
        for module in model.towers()[tower]:
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
        counts[tower] = total
    counts["total"] = counts["image"] + counts["text"]
    return counts


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def text_encoder_cost(model: StagedSegmenter, names: Sequence[Sequence[str]], device: str) -> dict[str, Any]:
    """Median ms of :meth:`set_vocabulary` with an empty text cache (the text encoder runs) and with a
    warm one (embeddings looked up), over :data:`TEXT_REPEATS` calls each."""
    def timed(clear: bool) -> float:
        if clear:
            model.clear_text_cache()
        _sync(device)
        t0 = time.perf_counter()
        model.set_vocabulary(names)
        _sync(device)
        return (time.perf_counter() - t0) * 1000.0
    with torch.inference_mode():
        uncached = statistics.median(timed(True) for _ in range(TEXT_REPEATS))
        cached = statistics.median(timed(False) for _ in range(TEXT_REPEATS))
    return {"vocab": len(names), "names": sum(len(n) for n in names), "uncached_ms": uncached, "cached_ms": cached}


def synthetic_image(size: tuple[int, int], seed: int) -> np.ndarray:
    """A seeded uint8 RGB image of ``size`` ``(H, W)``: smooth colour fields plus noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) * 127 // max(h + w - 2, 1)], -1)
    return np.clip(base + rng.integers(-20, 21, size=(h, w, 3)), 0, 255).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _channels_last(inputs: Any) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.contiguous(memory_format=torch.channels_last) if inputs.dim() == 4 and \
            inputs.is_floating_point() else inputs
    if isinstance(inputs, dict):
        return {k: _channels_last(v) for k, v in inputs.items()}
    return inputs


class Prepared:
    """One target made ready for a setting: moved, converted, compiled, with its timed callables."""

    def __init__(self, target: Target, setting: Setting, image: np.ndarray) -> None:
        self.target, self.setting, self.image = target, setting, image
        model = target.model
        self.forward: Callable[[Batch], Batch] = torch.compile(model.forward) if setting.compile else model.forward
        with numerics(setting):
            self.inputs = stack_inputs([model.preprocess(image)] * setting.batch)
        if setting.channels_last:
            self.inputs = _channels_last(self.inputs)
        self.png = png_bytes(image)

    def model_only(self) -> Batch:
        return self.forward(self.inputs)

    def end_to_end(self) -> list[np.ndarray]:
        model = self.target.model
        images = [np.asarray(Image.open(io.BytesIO(self.png)).convert("RGB")) for _ in range(self.setting.batch)]
        inputs = stack_inputs([model.preprocess(image) for image in images])
        if self.setting.channels_last:
            inputs = _channels_last(inputs)
        return model.postprocess(self.forward(inputs), images[0].shape[:2])

    def call(self, measured: str) -> Callable[[], Any]:
        fn = self.model_only if measured == "model-only" else self.end_to_end

        def run() -> Any:
            with numerics(self.setting):
                return fn()
        return run


def per_image(flops: dict[str, Any], batch: int) -> dict[str, Any]:
    """A FLOP count of a batch (:meth:`FlopCount.to_json`) divided by the batch size (call counts kept)."""
    return {**flops, "total": flops["total"] / batch, "gflops": flops["gflops"] / batch,
            "by_operator": {op: n / batch for op, n in flops["by_operator"].items()}}


def peak_memory_mib(fn: Callable[[], Any], device: str) -> dict[str, float] | None:
    """Peak CUDA memory (MiB, allocated and reserved) of one call of ``fn``; None off CUDA."""
    if torch.device(device).type != "cuda":
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return {"allocated": torch.cuda.max_memory_allocated(device) / 2**20,
            "reserved": torch.cuda.max_memory_reserved(device) / 2**20}


def clip_forwards_per_image(prepared: Prepared) -> float | None:
    """CLIP image-encoder forwards per image of one model-only call, from the model's counters."""
    model = prepared.target.model
    before = model.counters().get("clip_image_forwards")
    if before is None:
        return None
    prepared.call("model-only")()
    return (model.counters()["clip_image_forwards"] - before) / prepared.setting.batch


def mask_sweep(prepared: Prepared, counts: Sequence[int], options: ProfileOptions) -> list[dict[str, Any]]:
    """Model-only latency against ``max_proposals`` (a fifth of the iterations, one repeat each, a
    shorter warm-up: the points are compared with each other, not recorded as headline latencies)."""
    model = prepared.target.model
    original = model.max_proposals
    out = []
    try:
        for n in counts:
            model.max_proposals = n
            forwards = clip_forwards_per_image(prepared)
            timing = measure({"m": prepared.call("model-only")}, options.device,
                             iterations=max(1, options.iterations // 5), repeats=1, warmup=min(3, options.warmup))["m"]
            out.append({"max_proposals": n, "clip_image_forwards_per_image": forwards,
                        "median_ms": timing.median_ms})
    finally:
        model.max_proposals = original
    return out


def settings_grid(options: ProfileOptions) -> Iterator[tuple[tuple[int, int], int | None, list[list[str]]]]:
    """(input size, vocabulary size, class names) for every declared input and vocabulary."""
    vocabs = [(len(options.class_names), [list(c) for c in options.class_names])] if options.class_names \
        else [(k, vocabulary(k)) for k in options.vocabs]
    for size in options.inputs:
        for k, names in vocabs:
            yield size, k, names


def _measurement(setting: Setting, timing: Timing, extras: dict[str, Any]) -> dict[str, Any]:
    summary = timing.summary()
    return {"setting": setting.to_json(), "label": setting.label(), "latency_ms": summary,
            "images_per_s": setting.batch * 1000.0 / summary["median"], **extras}


def profile(targets: Sequence[Target], options: ProfileOptions, progress: bool = True) -> list[dict[str, Any]]:
    """Measure every target under every setting of ``options``; one speed record per target (the
    first target's record carries the ``comparison`` with the others when there are several)."""
    device = options.device
    for t in targets:
        t.model.to(device)
        if options.channels_last:
            for module in t.model.towers()["image"]:
                module.to(memory_format=torch.channels_last)
    results: dict[str, dict[str, Any]] = {t.name: {"measurements": [], "text_encoder": [], "mask_sweep": None}
                                          for t in targets}
    comparisons: list[dict[str, Any]] = []
    grid = list(settings_grid(options))
    bar = tqdm(total=len(grid) * len(options.measured), desc="profile", unit="setting", disable=not progress)
    for size, k, names in grid:
        prepared = {}
        for t in targets:
            results[t.name]["text_encoder"].append(text_encoder_cost(t.model, names, device))
            base = Setting(size, None if isinstance(t.model, ModuleSegmenter) else k, options.batch,
                           options.precision, options.channels_last, options.compile, device)
            prepared[t.name] = Prepared(t, base, synthetic_image(size, options.seed))
        extras = {}
        for name, p in prepared.items():
            flops = None
            if options.flops:
                with numerics(p.setting, inference=False):
                    flops = per_image(count_flops(p.model_only).to_json(), options.batch)
            extras[name] = {"flops_per_image": flops, "clip_image_forwards_per_image": clip_forwards_per_image(p),
                            "memory_mib": peak_memory_mib(p.call("model-only"), device)}
            if results[name]["mask_sweep"] is None and hasattr(p.target.model, "max_proposals"):
                results[name]["mask_sweep"] = mask_sweep(p, options.mask_sweep, options)
        for measured in options.measured:
            timings = measure({n: p.call(measured) for n, p in prepared.items()}, device,
                              iterations=options.iterations, repeats=options.repeats, warmup=options.warmup)
            for n, p in prepared.items():
                setting = replace(p.setting, measured=measured)
                results[n]["measurements"].append(_measurement(setting, timings[n], extras[n]))
            if len(targets) > 1:
                first = targets[0].name
                for other in targets[1:]:
                    comparisons.append({"baseline": other.name, "setting": replace(prepared[first].setting,
                                                                                   measured=measured).to_json(),
                                        **ratio_summary(timings[other.name], timings[first])})
            bar.update(1)
    bar.close()
    env = environment_card(device)
    records = []
    for i, t in enumerate(targets):
        r = results[t.name]
        headline = next((m for m in r["measurements"] if m["setting"]["measured"] == "end-to-end"),
                        r["measurements"][0])
        record = {"schema": SPEED_SCHEMA, "method": t.name,
                  "device": {"class": device_class(device), "name": device_name(device)},
                  "setting": headline["setting"],
                  "latency_ms": headline["latency_ms"], "images_per_s": headline["images_per_s"],
                  "measurements": r["measurements"], "params": parameter_counts(t.model),
                  "text_encoder": r["text_encoder"], "model": t.source,
                  "protocol": {"iterations": options.iterations, "repeats": options.repeats,
                               "warmup_min": options.warmup,
                               "timer": "cuda events, one synchronize per window" if device.startswith("cuda")
                               else "time.perf_counter per call"},
                  "environment": env, "timestamp": utc_timestamp(), "hardware": hardware(),
                  "ovbench": code_version()}
        if r["mask_sweep"] is not None:
            record["mask_sweep"] = r["mask_sweep"]
        if i == 0 and comparisons:
            record["comparison"] = comparisons
        records.append(record)
    return records
