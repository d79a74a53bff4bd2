"""Benchmark: semseg evaluation cost relative to merely decoding the PNGs.

Target (issue 2): scoring N pairs of 512x512 label maps costs at most 1.5x the time of decoding
them. Both runs use the same worker pool size, chunk size and files, measured side by side in one
process, each repeated; the ratio of medians is printed.

    python benchmarks/semseg_eval_speed.py --pairs 2000 --size 512 --workers 2
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ovbench.data.label_io import decode_label_map
from ovbench.evaluation.semseg import CHUNKSIZE, evaluate_semseg_submission
from ovbench.protocols.schema import protocol_from_dict


def write_dataset(root: Path, pairs: int, size: int, num_classes: int, seed: int = 0) -> None:
    """ADE-like label maps: piecewise-constant regions, predictions with shifted, relabelled blocks."""
    rng = np.random.default_rng(seed)
    (root / "labels").mkdir(parents=True)
    (root / "pred").mkdir()
    cells = size // 32
    for i in range(pairs):
        coarse = rng.integers(0, num_classes, (cells, cells), dtype=np.uint8)
        gt = np.kron(coarse, np.ones((32, 32), dtype=np.uint8))
        gt[rng.random(gt.shape) < 0.002] = 255
        pred = np.roll(gt, shift=int(rng.integers(1, 8)), axis=1)
        pred[pred == 255] = 0
        wrong = np.kron(rng.random((cells, cells)) < 0.2, np.ones((32, 32), dtype=bool))
        pred[wrong] = (pred[wrong].astype(np.int64) + 1) % num_classes
        Image.fromarray(gt).save(root / "labels" / f"{i:05d}.png")
        Image.fromarray(pred).save(root / "pred" / f"{i:05d}.png")


def _decode_pair(paths: tuple[str, str]) -> int:
    a, _ = decode_label_map(Path(paths[0]).read_bytes())
    b, _ = decode_label_map(Path(paths[1]).read_bytes())
    return a.shape[0] + b.shape[0]


def decode_only(root: Path, workers: int) -> None:
    ids = sorted(p.stem for p in (root / "labels").glob("*.png"))
    tasks = [(str(root / "pred" / f"{i}.png"), str(root / "labels" / f"{i}.png")) for i in ids]
    with mp.get_context("fork").Pool(workers) as pool:
        for _ in pool.imap(_decode_pair, tasks, chunksize=CHUNKSIZE):
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--classes", type=int, default=150)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    protocol = protocol_from_dict({
        "id": "bench", "version": 1, "task": "semseg", "dataset": "bench", "split": "val",
        "layout": {"images": "images/{id}.png", "labels": "labels/{id}.png"}, "ignore_label": 255,
        "metrics": ["mIoU"], "classes": [{"id": i, "name": f"c{i}", "partition": "novel" if i % 5 == 0 else "base"}
                                         for i in range(args.classes)]})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_dataset(root, args.pairs, args.size, args.classes)
        print(f"wrote {args.pairs} pairs of {args.size}x{args.size} maps in {time.perf_counter() - t0:.1f} s")
        decode_times, eval_times = [], []
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            t0 = time.perf_counter()
            decode_only(root, args.workers)
            decode_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            evaluate_semseg_submission(protocol, root / "pred", root, workers=args.workers, progress=False)
            eval_times.append(time.perf_counter() - t0)
    d, e = statistics.median(decode_times), statistics.median(eval_times)
    print(f"decode only : median {d:.2f} s  ({', '.join(f'{t:.2f}' for t in decode_times)})")
    print(f"evaluate    : median {e:.2f} s  ({', '.join(f'{t:.2f}' for t in eval_times)})")
    print(f"ratio evaluate / decode = {e / d:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
