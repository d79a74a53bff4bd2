"""``ovbench evaluate``: score a submission, print the metrics, optionally record them.

Semantic segmentation takes a folder/zip/tar of label PNGs (``<video>/<frame>.png`` for video
semseg); detection a COCO results JSON, video instances a YouTube-VIS results JSON (``.json`` or
``.json.gz``). The protocol's task decides.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ovbench.errors import OvbenchError
from ovbench.evaluation.detection import DEFAULT_BACKEND, evaluate_detection_submission
from ovbench.evaluation.detection_backends import BACKENDS
from ovbench.evaluation.semseg import default_workers, evaluate_semseg_submission
from ovbench.evaluation.video_instance import evaluate_video_instance_submission
from ovbench.evaluation.video_semseg import evaluate_video_semseg_submission
from ovbench.protocols import get_protocol
from ovbench.records.result import reproduced_record, save_per_image, write_record_with_per_image
from ovbench.records.store import atomic_write_json

DEFAULT_ROOT = Path("leaderboards")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score predictions on a protocol")
    p.add_argument("--protocol", required=True, help="protocol id (see `ovbench list`)")
    p.add_argument("--predictions", required=True, type=Path,
                   help="semseg: directory, .zip or .tar of <image_id>.png (<video>/<frame>.png for video); "
                        "detection: COCO results .json[.gz]; video-instance: YouTube-VIS results .json[.gz]")
    p.add_argument("--data-root", required=True, type=Path, help="folder holding the protocol's ground truth")
    p.add_argument("--method", help="method name for the record (default: the predictions' name)")
    p.add_argument("--out", type=Path, help="also write the printed JSON here, with per-image statistics beside it")
    p.add_argument("--record", action="store_true", help="write a result record under <root>/results/<protocol>/")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="leaderboard root for --record (default: leaderboards)")
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="free-form configuration stored in the record (repeatable)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="bootstrap resamples for 95%% CIs of mIoU and mIoU_novel (default: off)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--workers", type=int, default=default_workers(), help="semseg: decoding processes")
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help="detection: AP library (default faster-coco-eval; pycocotools / lvis are the references)")
    p.add_argument("--truncate", action="store_true",
                   help="detection / video-instance: keep each image's (video's) top-scoring detections (tracks) up "
                        "to the protocol's cap instead of rejecting the submission (recorded)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def parse_config(items: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise OvbenchError(f"--config {item!r}: use KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value
    return config


def run(args: argparse.Namespace) -> int:
    protocol = get_protocol(args.protocol, data_root=args.data_root)
    config = parse_config(args.config)
    method = args.method or _method_name(args.predictions)
    if protocol.task == "detection":
        return _run_detection(args, protocol, method, config)
    if protocol.task == "video-semseg":
        return _run_video_semseg(args, protocol, method, config)
    if protocol.task == "video-instance":
        return _run_video_instance(args, protocol, method, config)
    if protocol.task != "semseg":
        raise OvbenchError(f"protocol {protocol.id}: evaluating {protocol.task} protocols is not available yet")
    result = evaluate_semseg_submission(protocol, args.predictions, args.data_root, workers=args.workers,
                                        bootstrap=args.bootstrap, seed=args.seed,
                                        keep_per_image=bool(args.out or args.record),
                                        progress=not args.no_progress)
    summary: dict[str, Any] = {"protocol": protocol.id, "protocol_hash": protocol.hash, "metrics": result.metrics}
    inputs = {"predictions": str(args.predictions), "predictions_sha256": result.predictions_sha256,
              "ground_truth_sha256": result.ground_truth_sha256, "num_images": len(result.image_ids)}
    if args.out:
        out = {**summary, "method": method, "inputs": inputs,
               "per_image_file": save_per_image(args.out, result.image_ids, result.per_image)}
        atomic_write_json(args.out, out)
    if args.record:
        record = reproduced_record(method, protocol, result.metrics, inputs, config)
        path = write_record_with_per_image(args.root, record, result.image_ids, result.per_image)
        summary["record"] = str(path)
    print(json.dumps(summary, indent=2))
    return 0


def _method_name(predictions: Path) -> str:
    """The predictions' file or folder name without its data suffixes (``vild.json.gz`` -> ``vild``)."""
    name = predictions.resolve().name
    for suffix in (".gz", ".json", ".zip", ".tar"):
        name = name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else name
    return name


def _emit(args: argparse.Namespace, protocol, method: str, config: dict[str, Any], metrics: dict[str, Any],
          inputs: dict[str, Any], evaluation: dict[str, Any] | None = None) -> int:
    """Print the result JSON; write it to ``--out`` and a record with ``--record`` (no per-image file)."""
    summary: dict[str, Any] = {"protocol": protocol.id, "protocol_hash": protocol.hash, "metrics": metrics}
    if evaluation:
        summary["evaluation"] = evaluation
    if args.out:
        atomic_write_json(args.out, {**summary, "method": method, "inputs": inputs})
    if args.record:
        record = reproduced_record(method, protocol, metrics, inputs, config, evaluation=evaluation)
        summary["record"] = str(write_record_with_per_image(args.root, record, None, None))
    print(json.dumps(summary, indent=2))
    return 0


def _semseg_only_options(args: argparse.Namespace) -> None:
    if args.bootstrap:
        raise OvbenchError("--bootstrap is available for semseg protocols only")


def _run_detection(args: argparse.Namespace, protocol, method: str, config: dict[str, Any]) -> int:
    _semseg_only_options(args)
    result = evaluate_detection_submission(protocol, args.predictions, args.data_root, backend=args.backend,
                                           truncate=args.truncate, progress=not args.no_progress)
    inputs = {"predictions": str(args.predictions), "predictions_sha256": result.predictions_sha256,
              "ground_truth_sha256": result.ground_truth_sha256, "num_images": result.num_images,
              "num_detections": result.num_detections}
    return _emit(args, protocol, method, config, result.metrics, inputs, result.evaluation_info())


def _run_video_semseg(args: argparse.Namespace, protocol, method: str, config: dict[str, Any]) -> int:
    _semseg_only_options(args)
    result = evaluate_video_semseg_submission(protocol, args.predictions, args.data_root, workers=args.workers,
                                              progress=not args.no_progress)
    inputs = {"predictions": str(args.predictions), "predictions_sha256": result.predictions_sha256,
              "ground_truth_sha256": result.ground_truth_sha256, "num_videos": len(result.videos),
              "num_frames": result.num_frames}
    return _emit(args, protocol, method, config, result.metrics, inputs)


def _run_video_instance(args: argparse.Namespace, protocol, method: str, config: dict[str, Any]) -> int:
    _semseg_only_options(args)
    result = evaluate_video_instance_submission(protocol, args.predictions, args.data_root, truncate=args.truncate,
                                                workers=args.workers, progress=not args.no_progress)
    inputs = {"predictions": str(args.predictions), "predictions_sha256": result.predictions_sha256,
              "ground_truth_sha256": result.ground_truth_sha256, "num_videos": result.num_videos,
              "num_tracks": result.num_tracks}
    return _emit(args, protocol, method, config, result.metrics, inputs,
                 {"truncation": result.truncation.to_dict()})
