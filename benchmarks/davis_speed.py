"""Benchmark: DAVIS J&F per frame-object, ovbench's fast implementation against the literal one.

Target (DAVIS issue): at 480x854 on one core, J&F costs at most 1/20 of the reference's 23 ms per
frame-object (J 4 ms + F 19 ms: davis2017-evaluation as measured in the prior-art notes, section
2.1). :mod:`ovbench.metrics.davis_direct` (the reference's algorithm step by step, with the same
OpenCV dilation) is timed in the same run on a subset of the same frames, so the ratio on this
machine is printed too, and the two are checked to agree exactly. Then the folder evaluation
(PNG decoding included) is timed with ``--workers 1`` and ``--workers N`` to show the scaling.

Frames are synthetic DAVIS-like sequences: 2-4 star-shaped objects with wavy outlines moving
across the frame, predictions shifted, scaled and partly wrong. Timings are medians over
``--repeat`` runs; OpenCV is limited to one thread.

    python benchmarks/davis_speed.py --sequences 12 --frames 30 --workers 2 --repeat 5
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ovbench.evaluation.davis import CHUNK_PIXELS, evaluate_davis
from ovbench.metrics.davis import jf_label_map_stack, jf_label_maps
from ovbench.metrics.davis_direct import jf_label_maps_direct

HEIGHT, WIDTH = 480, 854
REFERENCE_MS = 23.0  # davis2017-evaluation, per frame-object at 480p, one core (prior-art notes, 2.1)


def _paint(label_map: np.ndarray, label: int, cy: float, cx: float, radius: float, waves: np.ndarray) -> None:
    """Paint a star-shaped blob, radius(θ) = radius · (1 + Σ a_i sin(i θ + φ_i)), into ``label_map``."""
    reach = int(radius * (1 + waves[:, 0].sum())) + 1
    y0, x0 = max(0, int(cy) - reach), max(0, int(cx) - reach)
    y1, x1 = min(label_map.shape[0], int(cy) + reach + 1), min(label_map.shape[1], int(cx) + reach + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    wobble = sum(a * np.sin(i * theta + phase) for i, (a, phase) in enumerate(waves, start=2))
    label_map[y0:y1, x0:x1][np.hypot(dy, dx) <= radius * (1 + wobble)] = label


def make_sequence(rng: np.random.Generator, frames: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """GT and predicted label maps of one sequence (uint8, object ids 1..K, 0 background)."""
    k = int(rng.integers(2, 5))
    start = rng.uniform([0.25 * HEIGHT, 0.2 * WIDTH], [0.75 * HEIGHT, 0.8 * WIDTH], (k, 2))
    velocity = rng.uniform(-3, 3, (k, 2))
    radius = rng.uniform(40, 110, k)
    waves = [np.stack([rng.uniform(0, 0.12, 6), rng.uniform(0, 2 * np.pi, 6)], axis=1) for _ in range(k)]
    error = rng.uniform(-6, 6, (k, 2))
    gts, preds = [], []
    for t in range(frames):
        gt, pred = np.zeros((HEIGHT, WIDTH), np.uint8), np.zeros((HEIGHT, WIDTH), np.uint8)
        for i in range(k):
            cy, cx = start[i] + velocity[i] * t
            w = waves[i] + [0, 0.05 * t]
            _paint(gt, i + 1, cy, cx, radius[i], w)
            wrong = w + rng.normal(0, [0.02, 0.1], w.shape)
            _paint(pred, i + 1, cy + error[i, 0], cx + error[i, 1], radius[i] * rng.uniform(0.9, 1.1), wrong)
        gts.append(gt)
        preds.append(pred)
    hidden = sorted(set(range(1, k + 1)) - set(np.unique(gts[0]).tolist()))  # covered in the first frame
    return gts, [np.where(np.isin(p, hidden), 0, p).astype(np.uint8) for p in preds]


def _time(fn, repeat: int) -> float:
    """Median wall time of ``repeat`` runs after one warm-up run."""
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=12)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--direct-frames", type=int, default=20, help="frames timed with the slow implementation")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(args.seed)
    data = [make_sequence(rng, args.frames) for _ in range(args.sequences)]
    pairs = [(g, p, sorted(set(np.unique(seq_gts[0]).tolist()) - {0}))
             for seq_gts, seq_preds in data for g, p in zip(seq_gts, seq_preds)]
    frame_objects = sum(len(ids) for _, _, ids in pairs)
    print(f"{args.sequences} sequences x {args.frames} frames at {WIDTH}x{HEIGHT}: {frame_objects} frame-objects")

    step = max(1, CHUNK_PIXELS // (HEIGHT * WIDTH))
    stacks = [(np.stack(gts[t:t + step]), np.stack(preds[t:t + step]), sorted(set(np.unique(gts[0]).tolist()) - {0}))
              for gts, preds in data for t in range(0, len(gts), step)]
    per_frame = _time(lambda: [jf_label_maps(g, p, ids) for g, p, ids in pairs], args.repeat)
    stacked = _time(lambda: [jf_label_map_stack(g, p, ids) for g, p, ids in stacks], args.repeat)
    subset = pairs[:: max(1, len(pairs) // args.direct_frames)][: args.direct_frames]
    direct = _time(lambda: [jf_label_maps_direct(g, p, ids) for g, p, ids in subset], 1)
    for g, p, ids in subset:
        a, b = jf_label_maps(g, p, ids), jf_label_maps_direct(g, p, ids)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), "fast and direct disagree"
    frame_ms, stack_ms = 1000 * per_frame / frame_objects, 1000 * stacked / frame_objects
    direct_ms = 1000 * direct / sum(len(ids) for _, _, ids in subset)
    print(f"fast J&F, {step} frames per call (as evaluate-davis): {stack_ms:.3f} ms per frame-object")
    print(f"fast J&F, one frame per call (jf_label_maps):      {frame_ms:.3f} ms per frame-object")
    print(f"direct J&F (reference algorithm, {len(subset)} of the frames): {direct_ms:.3f} ms per frame-object, "
          f"identical results")
    print(f"speed-up: {direct_ms / stack_ms:.1f}x over direct on this machine; "
          f"{REFERENCE_MS / stack_ms:.1f}x over the reference's {REFERENCE_MS:.0f} ms (target >= 20x)")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for s, (gts, preds) in enumerate(data):
            for t, (g, p) in enumerate(zip(gts, preds)):
                for sub, arr in (("gt", g), ("pred", p)):
                    (root / sub / f"seq{s:02d}").mkdir(parents=True, exist_ok=True)
                    Image.fromarray(arr).save(root / sub / f"seq{s:02d}" / f"{t:05d}.png")
        walls = {}
        for workers in sorted({1, args.workers}):
            walls[workers] = _time(lambda: evaluate_davis(root / "gt", root / "pred", "semi-supervised",
                                                          workers=workers, progress=False), args.repeat)
            scored = args.sequences * (args.frames - 2)
            print(f"evaluate-davis semi-supervised, --workers {workers}: {walls[workers]:.2f} s "
                  f"({1000 * walls[workers] / scored:.2f} ms per frame incl. PNG decoding)")
        if args.workers > 1:
            print(f"scaling: {walls[1] / walls[args.workers]:.2f}x with {args.workers} workers")


if __name__ == "__main__":
    main()
