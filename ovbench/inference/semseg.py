"""Predict a semantic-segmentation protocol's images with a :class:`SemanticSegmenter`.

The output folder is exactly the semseg submission format (:mod:`ovbench.submissions.semseg`):
one ``<image_id>.png`` of class indices per image. It is written into a temporary sibling folder
and renamed at the end, so an interrupted run leaves no half-written submission.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ovbench.data.semseg import SemsegGroundTruth
from ovbench.errors import OvbenchError
from ovbench.models.api import SemanticSegmenter
from ovbench.protocols import Protocol
from ovbench.submissions.semseg import expected_dtype

NAME_SETS = ("canonical", "synonyms")


def vocabulary(protocol: Protocol, names: str = "canonical") -> list[list[str]]:
    """The protocol's classes as name lists: the canonical name only, or followed by its synonyms."""
    if names not in NAME_SETS:
        raise OvbenchError(f"names must be one of {NAME_SETS}, got {names!r}")
    return [[c.name, *(c.synonyms if names == "synonyms" else ())] for c in protocol.classes]


@dataclass
class PredictionRun:
    """What a prediction run did: ``latencies_s`` are per-image seconds of ``model.predict`` alone
    (decoded image in, label map out; no file I/O); ``counters`` the model's work counters."""

    out: Path
    image_ids: list[str]
    latencies_s: list[float] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return len(self.latencies_s) / sum(self.latencies_s) if self.latencies_s else 0.0

    def per_image(self, counter: str) -> float:
        """A counter divided by the number of images."""
        return self.counters.get(counter, 0) / max(len(self.image_ids), 1)


def _write_label_png(path: Path, labels: np.ndarray, num_classes: int) -> None:
    dtype = expected_dtype(num_classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if dtype == np.uint8 else "I;16"
    Image.fromarray(labels.astype(dtype), mode=mode).save(path)


def predict_protocol(model: SemanticSegmenter, protocol: Protocol, data_root: Path | str, out: Path | str,
                     names: str = "canonical", limit: int | None = None, overwrite: bool = False,
                     progress: bool = True) -> PredictionRun:
    """Predict every image of ``protocol`` (the first ``limit`` ids when given) into ``out``."""
    if protocol.task != "semseg":
        raise OvbenchError(f"protocol {protocol.id} is a {protocol.task} protocol; `ovbench predict` writes "
                           f"semseg submissions")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OvbenchError(f"{out}: folder exists and is not empty; pass --overwrite or another --out")
    truth = SemsegGroundTruth(protocol, data_root)
    ids = truth.ids()[:limit] if limit is not None else truth.ids()
    model.set_vocabulary(vocabulary(protocol, names))
    before = model.counters()
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    run = PredictionRun(out=out, image_ids=ids)
    try:
        for iid in tqdm(ids, desc=f"predict {protocol.id}", disable=not progress):
            image = _read_image(truth.image_path(iid))
            start = time.perf_counter()
            labels = model.predict(image)
            run.latencies_s.append(time.perf_counter() - start)
            _check_labels(labels, image, protocol, model.name)
            _write_label_png(partial / f"{iid}.png", labels, protocol.num_classes)
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    after = model.counters()
    run.counters = {k: after[k] - before.get(k, 0) for k in after}
    return run


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise OvbenchError(f"{path}: cannot read the image ({e}); re-create the data") from None


def _check_labels(labels: np.ndarray, image: np.ndarray, protocol: Protocol, model: str) -> None:
    if labels.shape != image.shape[:2]:
        raise OvbenchError(f"model {model} returned a {labels.shape} label map for a {image.shape[:2]} image")
    if labels.size and (labels.min() < 0 or labels.max() >= protocol.num_classes):
        raise OvbenchError(f"model {model} returned labels outside 0..{protocol.num_classes - 1}")
