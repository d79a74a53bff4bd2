"""Predict a detection protocol's images with an :class:`~ovbench.models.detector.ov_detector.OVDetector`.

The output is exactly the detection submission format (:mod:`ovbench.submissions.detection`): one COCO
results list (``image_id``, ``category_id`` = the protocol's class id, ``bbox`` xywh pixels, ``score``,
``segmentation`` compressed RLE when the model has a mask head), at most the protocol's largest
per-image cap of detections per image, written atomically (``.json``, or gzipped for ``.json.gz``).
"""
from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ovbench.data.detection import DetectionGroundTruth
from ovbench.data.detection_training import image_path, read_rgb
from ovbench.errors import OvbenchError
from ovbench.evaluation.detection import DetectionSettings, instances_to_coco_results
from ovbench.inference.semseg import PredictionRun, vocabulary
from ovbench.models.detector.ov_detector import OVDetector
from ovbench.protocols import Protocol
from ovbench.records.store import atomic_write


def predict_protocol_detection(model: OVDetector, protocol: Protocol, data_root: Path | str, out: Path | str,
                               names: str = "canonical", limit: int | None = None, overwrite: bool = False,
                               progress: bool = True) -> PredictionRun:
    """Predict the images of ``protocol``'s annotation file (the first ``limit`` by id when given) and
    write the COCO results list to ``out``. ``latencies_s`` time ``model.predict`` alone."""
    if protocol.task != "detection":
        raise OvbenchError(f"protocol {protocol.id} is a {protocol.task} protocol, not a detection one")
    out = Path(out)
    if out.exists() and not overwrite:
        raise OvbenchError(f"{out}: file exists; pass --overwrite or another --out")
    cap = DetectionSettings.of(protocol).submission_cap
    truth = DetectionGroundTruth.load(protocol, data_root)
    images = sorted(truth.dataset["images"], key=lambda im: int(im["id"]))[:limit]
    class_ids = [c.id for c in protocol.require_classes()]
    model.set_vocabulary(vocabulary(protocol, names))
    run = PredictionRun(out=out, image_ids=[str(im["id"]) for im in images])
    entries = []
    for entry in tqdm(images, desc=f"predict {protocol.id}", disable=not progress):
        image = read_rgb(image_path(protocol.layout.images, Path(data_root), entry))
        start = time.perf_counter()
        detections = model.predict(image)[:cap]
        run.latencies_s.append(time.perf_counter() - start)
        if not detections:
            continue
        masks = None
        if detections[0].mask is not None:
            masks = np.stack([d.mask for d in detections])
        entries += instances_to_coco_results(int(entry["id"]), np.array([d.box for d in detections]),
                                             np.array([d.score for d in detections]),
                                             np.array([class_ids[d.label] for d in detections]), masks)
    data = json.dumps(entries).encode("utf-8")
    atomic_write(out, lambda f: f.write(gzip.compress(data) if out.name.endswith(".gz") else data))
    run.counters = {"clip_image_forwards": 0}
    return run
