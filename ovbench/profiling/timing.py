"""Latency measurement under ovbench's timing protocol (prior-art spec §5.2).

A measurement times one callable: a warm-up until stable, then ``repeats`` windows of
``iterations`` timed calls each. On CUDA every call is bracketed by CUDA events recorded on the
current stream and the window ends with a single ``torch.cuda.synchronize()`` (no synchronisation
inside the window); on the CPU every call is bracketed by ``time.perf_counter``. Several callables
measured together (``ovbench profile --vs``) alternate window by window, so that a drift in clocks
or load hits both alike.

All latencies are milliseconds per call.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

#: Warm-up: at least this many calls, then chunks of :data:`WARMUP_CHUNK` calls (fewer when the minimum
#: is smaller: ``min(WARMUP_CHUNK, max(1, minimum))``, for models that take seconds per call on a CPU)
#: until the median of the last chunk is within :data:`WARMUP_TOLERANCE` of the chunk before, at most
#: :data:`WARMUP_MAX` calls or :data:`WARMUP_MAX_SECONDS` after the minimum; whether it became stable
#: is recorded.
WARMUP_MIN = 10
WARMUP_CHUNK = 5
WARMUP_TOLERANCE = 0.05
WARMUP_MAX = 200
WARMUP_MAX_SECONDS = 60.0


@dataclass
class Timing:
    """Per-call latencies (ms) of one callable, one list per repeat window, and its warm-up length."""

    windows_ms: list[list[float]] = field(default_factory=list)
    warmup_calls: int = 0
    warmup_stable: bool = True

    @property
    def all_ms(self) -> list[float]:
        return [t for window in self.windows_ms for t in window]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.all_ms)

    def window_medians(self) -> list[float]:
        return [statistics.median(w) for w in self.windows_ms]

    def summary(self) -> dict[str, Any]:
        """``median``, ``p90``, ``mean``, ``std`` (ms, over every timed call), ``cv`` (std / mean of the
        calls), ``cv_repeats`` (std / mean of the per-window medians: the stability across repeats),
        ``repeat_medians``, ``iterations`` (per window), ``repeats``, ``warmup_calls`` and
        ``warmup_stable`` (False: the warm-up hit its call or time cap before two chunks agreed)."""
        calls = self.all_ms
        mean = statistics.fmean(calls)
        std = statistics.stdev(calls) if len(calls) > 1 else 0.0
        medians = self.window_medians()
        repeat_std = statistics.stdev(medians) if len(medians) > 1 else 0.0
        return {"median": statistics.median(calls), "p90": percentile(calls, 90), "mean": mean, "std": std,
                "cv": std / mean if mean > 0 else 0.0,
                "cv_repeats": repeat_std / statistics.fmean(medians) if medians and statistics.fmean(medians) > 0
                else 0.0,
                "repeat_medians": medians, "iterations": len(self.windows_ms[0]) if self.windows_ms else 0,
                "repeats": len(self.windows_ms), "warmup_calls": self.warmup_calls,
                "warmup_stable": self.warmup_stable}


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between order statistics."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def time_window(fn: Callable[[], Any], calls: int, device: torch.device | str) -> list[float]:
    """Latency (ms) of each of ``calls`` consecutive calls of ``fn`` (see the module docstring)."""
    if _is_cuda(device):
        torch.cuda.synchronize(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(calls)]
        for start, stop in events:
            start.record()
            fn()
            stop.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(stop) for start, stop in events]
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def warm_up(fn: Callable[[], Any], device: torch.device | str, minimum: int = WARMUP_MIN,
            maximum: int = WARMUP_MAX, max_seconds: float = WARMUP_MAX_SECONDS) -> tuple[int, bool]:
    """Call ``fn`` until its latency is stable (see :data:`WARMUP_MIN`); returns the number of calls
    and whether two consecutive chunks agreed before a cap was hit."""
    calls = 0
    if minimum > 0:
        time_window(fn, minimum, device)
        calls = minimum
    chunk = min(WARMUP_CHUNK, max(1, minimum))
    start = time.perf_counter()
    previous = statistics.median(time_window(fn, chunk, device))
    calls += chunk
    while calls < maximum and time.perf_counter() - start < max_seconds:
        current = statistics.median(time_window(fn, chunk, device))
        calls += chunk
        if abs(current - previous) <= WARMUP_TOLERANCE * previous:
            return calls, True
        previous = current
    return calls, False


def measure(fns: Mapping[str, Callable[[], Any]], device: torch.device | str, iterations: int = 100,
            repeats: int = 3, warmup: int = WARMUP_MIN) -> dict[str, Timing]:
    """Warm each callable up, then time ``repeats`` windows of ``iterations`` calls, alternating
    between the callables window by window; returns one :class:`Timing` per name."""
    if iterations < 1 or repeats < 1:
        raise ValueError(f"iterations and repeats must be >= 1, got {iterations} and {repeats}")
    timings = {}
    for name, fn in fns.items():
        calls, stable = warm_up(fn, device, minimum=warmup)
        timings[name] = Timing(warmup_calls=calls, warmup_stable=stable)
    for _ in range(repeats):
        for name, fn in fns.items():
            timings[name].windows_ms.append(time_window(fn, iterations, device))
    return timings


def ratio_summary(baseline: Timing, model: Timing) -> dict[str, Any]:
    """``speedup`` = baseline median / model median over all calls, with its spread: the ratio of
    the per-window medians, window by window (``per_repeat``, ``min``, ``max``)."""
    per_repeat = [b / m for b, m in zip(baseline.window_medians(), model.window_medians())]
    return {"speedup": baseline.median_ms / model.median_ms, "per_repeat": per_repeat,
            "min": min(per_repeat), "max": max(per_repeat)}
