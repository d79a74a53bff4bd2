"""``ovbench predict``: run a model over a protocol's images and write the submission
``ovbench evaluate`` reads (semantic segmentation: one label PNG per image; detection: a COCO results
JSON from a detector model file)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ovbench.records.store import atomic_write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict a protocol's images with a model (writes a submission)")
    p.add_argument("--model", required=True, type=Path,
                   help="a model file written by `ovbench train` (model.pt) or a model config "
                        "(.yaml/.json with a 'kind', e.g. baselines/maskclip/configs/synth-ov.yaml)")
    p.add_argument("--protocol", required=True, help="protocol id (see `ovbench list`)")
    p.add_argument("--data-root", required=True, type=Path, help="folder holding the protocol's images")
    p.add_argument("--out", required=True, type=Path,
                   help="submission folder to write (detection protocols: a COCO results .json or .json.gz)")
    p.add_argument("--names", choices=("canonical", "synonyms"), default="canonical",
                   help="class names given to the model: the canonical name, or also its synonyms "
                        "(max-pooled per class); default canonical")
    p.add_argument("--limit", type=int, help="only the first N images (sorted ids)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder (or file)")
    p.add_argument("--report", type=Path, help="also write timing and work counters as JSON here")
    p.add_argument("--device", default="cpu", help="torch device for segmenter and detector model files (default cpu)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovbench.inference import predict_protocol
    from ovbench.models.zoo import load_model
    from ovbench.protocols import get_protocol

    protocol = get_protocol(args.protocol)
    if protocol.task == "detection":
        from ovbench.inference.detection import predict_protocol_detection
        from ovbench.models.detector.ov_detector import load_detector
        model = load_detector(args.model, device=args.device)
        predict = predict_protocol_detection
    else:
        model, predict = load_model(args.model, device=args.device), predict_protocol
    result = predict(model, protocol, args.data_root, args.out, names=args.names, limit=args.limit,
                     overwrite=args.overwrite, progress=not args.no_progress)
    report = {"model": model.name, "protocol": protocol.id, "images": len(result.image_ids),
              "out": str(result.out), "images_per_s": result.images_per_second,
              "latency_ms_mean": 1000 * sum(result.latencies_s) / max(len(result.latencies_s), 1),
              "counters": result.counters,
              "counters_per_image": {k: result.per_image(k) for k in result.counters}}
    if args.report:
        atomic_write_json(args.report, report)
    print(json.dumps(report, indent=2))
    return 0
