"""Benchmark: ovbench's detection evaluation against plain pycocotools, side by side.

Target (issue 3): on a synthetic 5000-image COCO-format set with about 100 detections per image,
``ovbench evaluate`` (reading the results file, checking every entry, scoring with the default
faster-coco-eval backend) is at least 5x faster than the plain pycocotools recipe (``COCO``,
``loadRes``, ``evaluate``, ``accumulate``, ``summarize``) on the same files, with identical AP.
Both score box AP at 100 detections per image over the whole vocabulary; each is run
``--repeat`` times and the ratio of medians printed.

    python benchmarks/detection_eval_speed.py --images 5000 --dets 100 --repeat 3
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ovbench.evaluation.detection import evaluate_detection_submission
from ovbench.protocols.schema import protocol_from_dict

HEIGHT, WIDTH = 480, 640


def write_dataset(root: Path, images: int, dets: int, classes: int, seed: int = 0) -> None:
    """COCO-style ground truth (1-12 boxes per image) and ``dets`` detections per image.

    About 80% of the objects are found (jittered boxes); the rest of each image's detections
    are random boxes of random classes, scores uniform.
    """
    rng = np.random.default_rng(seed)
    gt_images, anns, results = [], [], []
    for img in range(1, images + 1):
        gt_images.append({"id": img, "height": HEIGHT, "width": WIDTH, "file_name": f"{img:06d}.jpg"})
        n = int(rng.integers(1, 13))
        wh = rng.uniform(8, 200, (n, 2))
        xy = rng.uniform(0, 1, (n, 2)) * ([WIDTH, HEIGHT] - wh)
        cats = rng.integers(1, classes + 1, n)
        for (x, y), (w, h), c in zip(xy, wh, cats):
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": int(c), "iscrowd": 0,
                         "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h)})
        found = rng.random(n) < 0.8
        jitter = rng.normal(0, 0.05, (n, 4)) * np.c_[wh, wh]
        boxes = np.c_[xy, wh] + jitter
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
        rest = dets - int(found.sum())
        rwh = rng.uniform(8, 200, (rest, 2))
        rxy = rng.uniform(0, 1, (rest, 2)) * ([WIDTH, HEIGHT] - rwh)
        all_boxes = np.r_[boxes[found], np.c_[rxy, rwh]]
        all_cats = np.r_[cats[found], rng.integers(1, classes + 1, rest)]
        for b, c, s in zip(all_boxes, all_cats, rng.random(dets)):
            results.append({"image_id": img, "category_id": int(c), "bbox": [float(v) for v in b],
                            "score": float(s)})
    categories = [{"id": c, "name": f"class {c}"} for c in range(1, classes + 1)]
    (root / "gt.json").write_text(json.dumps({"images": gt_images, "annotations": anns,
                                              "categories": categories}))
    (root / "results.json").write_text(json.dumps(results))


def bench_protocol(classes: int) -> object:
    """A COCO-style protocol over the synthetic vocabulary: box AP at 100 detections per image."""
    return protocol_from_dict({
        "id": "bench-coco", "version": 1, "task": "detection", "dataset": "synthetic", "split": "val",
        "layout": {"images": "{file_name}", "labels": "gt.json"}, "metrics": ["AP"],
        "classes": [{"id": c, "name": f"class {c}", "partition": "novel" if c % 4 == 0 else "base"}
                    for c in range(1, classes + 1)],
        "evaluation": {"style": "coco", "iou_types": ["bbox"], "max_detections": [100]}})


def run_pycocotools(root: Path) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(root / "gt.json"))
        ev = COCOeval(gt, gt.loadRes(str(root / "results.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(s) * 100 for s in ev.stats[:6]]


def run_ovbench(root: Path, protocol) -> list[float]:
    m = evaluate_detection_submission(protocol, root / "results.json", root, progress=False).metrics["bbox"]
    return [m[k] for k in ("AP_all@100", "AP50_all@100", "AP75_all@100", "APs_all@100", "APm_all@100",
                           "APl_all@100")]


def timed(fn, *args) -> tuple[float, list[float]]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=100, help="detections per image")
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    protocol = bench_protocol(args.classes)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(root, args.images, args.dets, args.classes)
        ref_times, our_times = [], []
        for _ in range(args.repeat):
            t, ref = timed(run_pycocotools, root)
            ref_times.append(t)
            t, ours = timed(run_ovbench, root, protocol)
            our_times.append(t)
            if not np.allclose(ref, ours, rtol=0, atol=1e-9):
                raise SystemExit(f"AP differs: pycocotools {ref} vs ovbench {ours}")
    ref_t, our_t = statistics.median(ref_times), statistics.median(our_times)
    print(f"{args.images} images, {args.images * args.dets} detections, {args.classes} classes, "
          f"median of {args.repeat}")
    print(f"  pycocotools (load, evaluate, accumulate, summarize): {ref_t:8.2f} s")
    print(f"  ovbench evaluate (load, check, faster-coco-eval):      {our_t:8.2f} s")
    print(f"  speed-up: {ref_t / our_t:.1f}x (target >= 5x); AP, AP50, AP75, APs/m/l identical: "
          f"{', '.join(f'{v:.3f}' for v in ref)}")


if __name__ == "__main__":
    main()
