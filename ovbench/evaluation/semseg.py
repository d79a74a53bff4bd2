"""Semantic-segmentation evaluation: online (detectron2 interface) and offline (prediction files).

:class:`SemSegEvaluator` drops into a detectron2 inference loop (``reset`` / ``process`` /
``evaluate``). :func:`evaluate_semseg_submission` scores a submission (see
:mod:`ovbench.submissions.semseg`): it checks every file, decodes PNGs in worker processes with a
progress bar, and either returns metrics or raises one :class:`ValidationError` listing every
problem — it never scores a partly valid submission.
"""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from ovbench.data.label_io import LabelDecodeError, decode_label_map
from ovbench.data.semseg import SemsegGroundTruth
from ovbench.errors import OvbenchError, ValidationError
from ovbench.metrics.bootstrap import bootstrap_ci, miou_metric
from ovbench.metrics.confusion import LabelRuns, SparseConfusion, StreamingConfusion
from ovbench.metrics.semseg import semseg_metrics
from ovbench.protocols.audit import unseen_class_ids
from ovbench.protocols.schema import Protocol
from ovbench.records.provenance import combined_digest
from ovbench.submissions.semseg import SemsegSubmission, expected_dtype

PRED_MODES = {np.uint8: ("L", "P"), np.uint16: ("I;16", "I;16B")}
#: Images handed to a worker at a time: large enough that inter-process traffic stays small.
CHUNKSIZE = 32


@dataclass(frozen=True)
class PairCheck:
    """What scoring needs to know about the protocol, sent once to each worker."""

    num_classes: int
    ignore_label: int

    def score(self, pred: np.ndarray, pred_mode: str, gt: np.ndarray, pred_name: str,
              gt_name: str) -> tuple[list[str], SparseConfusion | None]:
        """Validate one prediction against its ground truth; return problems, or its confusion."""
        k = self.num_classes
        dtype = expected_dtype(k)
        problems = []
        if pred_mode not in PRED_MODES[dtype]:
            want = "uint8 (mode L)" if dtype is np.uint8 else "uint16 (mode I;16)"
            problems.append(f"{pred_name}: mode {pred_mode}; this protocol has {k} classes, so write {want} PNGs")
        if pred.shape != gt.shape:
            problems.append(f"{pred_name}: size {pred.shape[1]}x{pred.shape[0]} but ground truth {gt_name} is "
                            f"{gt.shape[1]}x{gt.shape[0]}; resize predictions to the original image size "
                            f"(nearest neighbour)")
            return problems, None
        runs = LabelRuns.encode(pred, gt)
        too_big = runs.pred >= k
        if too_big.any():
            problems.append(f"{pred_name}: {runs.pixels_where(too_big)} pixels have class index >= {k} (max "
                            f"{int(runs.pred.max())}); pixels must be class indices 0..{k - 1} in the protocol's order")
        bad_gt = (runs.gt >= k) & (runs.gt != self.ignore_label)
        if bad_gt.any():
            problems.append(f"{gt_name}: ground truth has values outside 0..{k - 1} and ignore "
                            f"{self.ignore_label} (max {int(runs.gt[bad_gt].max())}); re-run the data preparation")
        if problems:
            return problems, None
        return [], runs.confusion(k, self.ignore_label)


@dataclass
class ImageResult:
    image_id: str
    problems: list[str]
    confusion: SparseConfusion | None
    pred_sha256: str
    gt_sha256: str


_WORKER_CHECK: PairCheck | None = None


def _init_worker(check: PairCheck) -> None:
    global _WORKER_CHECK
    _WORKER_CHECK = check


def read_and_score(check: PairCheck, task: tuple[str, str | bytes, str, str]
                   ) -> tuple[ImageResult, np.ndarray | None, np.ndarray | None]:
    """Read, hash, decode and score one (prediction, ground truth) pair; also return both maps.

    ``task`` is ``(image_id, prediction path or bytes, prediction name, ground-truth path)``.
    The maps are ``None`` when a file could not be read or decoded.
    """
    image_id, pred_src, pred_name, gt_path = task
    problems: list[str] = []
    try:
        pred_bytes = pred_src if isinstance(pred_src, bytes) else Path(pred_src).read_bytes()
    except OSError as e:
        return ImageResult(image_id, [f"{pred_name}: unreadable ({e})"], None, "", ""), None, None
    try:
        gt_bytes = Path(gt_path).read_bytes()
    except OSError as e:
        return ImageResult(image_id, [f"{gt_path}: ground truth unreadable ({e}); re-run the data preparation"],
                           None, "", ""), None, None
    pred_sha, gt_sha = hashlib.sha256(pred_bytes).hexdigest(), hashlib.sha256(gt_bytes).hexdigest()
    pred = gt = None
    try:
        pred, pred_mode = decode_label_map(pred_bytes)
    except LabelDecodeError as e:
        problems.append(f"{pred_name}: {e}; write a single-channel PNG of class indices")
    try:
        gt, _ = decode_label_map(gt_bytes)
    except LabelDecodeError as e:
        problems.append(f"{gt_path}: ground truth {e}; re-run the data preparation")
    if pred is None or gt is None:
        return ImageResult(image_id, problems, None, pred_sha, gt_sha), None, None
    problems, conf = check.score(pred, pred_mode, gt, pred_name, gt_path)
    return ImageResult(image_id, problems, conf, pred_sha, gt_sha), pred, gt


def _score_task(task: tuple[str, str | bytes, str, str]) -> ImageResult:
    """Worker body: :func:`read_and_score` without keeping the maps."""
    assert _WORKER_CHECK is not None
    return read_and_score(_WORKER_CHECK, task)[0]


class SemsegAccumulator:
    """Streaming state of one evaluation: the confusion matrix, optional per-image statistics.

    Protocols partitioned by the overlap rule also get ``mIoU_unseen`` over the leakage audit's
    unseen classes (:func:`~ovbench.protocols.audit.unseen_class_ids`).
    """

    def __init__(self, protocol: Protocol, keep_per_image: bool = False) -> None:
        self.protocol = protocol
        self.keep_per_image = keep_per_image
        self.unseen_ids = unseen_class_ids(protocol)
        self.reset()

    def reset(self) -> None:
        self.confusion = StreamingConfusion(self.protocol.num_classes)
        self.image_ids: list[str] = []
        self.per_image: list[np.ndarray] = []

    def add(self, image_id: str, conf: SparseConfusion) -> None:
        self.confusion.add(conf)
        self.image_ids.append(image_id)
        if self.keep_per_image:
            self.per_image.append(conf.per_class())

    def per_image_stats(self) -> np.ndarray:
        """``(N, 3, K)`` int64 per-image intersection / GT area / predicted area (keep_per_image only)."""
        if not self.keep_per_image:
            raise RuntimeError("per-image statistics were not kept; pass keep_per_image=True")
        k = self.protocol.num_classes
        return np.stack(self.per_image) if self.per_image else np.zeros((0, 3, k), dtype=np.int64)

    def metrics(self) -> dict[str, Any]:
        p = self.protocol
        m = semseg_metrics(self.confusion.per_class(), p.class_ids("base"), p.class_ids("novel"), self.unseen_ids)
        m["num_images"] = len(self.image_ids)
        return m


class SemSegEvaluator:
    """detectron2-style evaluator: ``reset()``, ``process(inputs, outputs)``, ``evaluate()``.

    ``inputs`` are dicts with ``image_id`` and optionally ``sem_seg_file_name`` (the GT path; by
    default the protocol's layout under ``data_root``); ``outputs`` are dicts whose ``sem_seg`` is
    either scores of shape ``(K, H, W)`` (argmax is taken) or a label map ``(H, W)``, as numpy
    arrays or torch tensors. ``evaluate()`` returns ``{"sem_seg": metrics}``.
    """

    def __init__(self, protocol: Protocol, data_root: Path | str | None = None,
                 keep_per_image: bool = False) -> None:
        self.protocol = protocol
        self.data_root = Path(data_root) if data_root is not None else None
        self._check = PairCheck(protocol.num_classes, protocol.ignore_label)
        self._acc = SemsegAccumulator(protocol, keep_per_image)

    def reset(self) -> None:
        self._acc.reset()

    def _gt_path(self, inp: dict[str, Any]) -> Path:
        if "sem_seg_file_name" in inp:
            return Path(inp["sem_seg_file_name"])
        if self.data_root is None:
            raise OvbenchError("SemSegEvaluator: give inputs a 'sem_seg_file_name' or the evaluator a data_root")
        return self.protocol.layout.label_path(self.data_root, inp["image_id"])

    def process(self, inputs: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]]) -> None:
        for inp, out in zip(inputs, outputs):
            sem_seg = out["sem_seg"]
            if hasattr(sem_seg, "detach"):
                sem_seg = sem_seg.detach().cpu().numpy()
            sem_seg = np.asarray(sem_seg)
            pred = sem_seg.argmax(axis=0) if sem_seg.ndim == 3 else sem_seg
            pred = pred.astype(expected_dtype(self.protocol.num_classes))
            gt_path = self._gt_path(inp)
            try:
                gt, _ = decode_label_map(gt_path.read_bytes())
            except (OSError, LabelDecodeError) as e:
                raise OvbenchError(f"{gt_path}: ground truth unreadable ({e}); re-run the data preparation") from e
            mode = "L" if pred.dtype == np.uint8 else "I;16"
            problems, conf = self._check.score(pred, mode, gt, f"prediction for {inp['image_id']}", str(gt_path))
            if problems:
                raise ValidationError("model output", problems)
            self._acc.add(str(inp["image_id"]), conf)

    def evaluate(self) -> dict[str, dict[str, Any]]:
        return {"sem_seg": self._acc.metrics()}

    def per_image_stats(self) -> np.ndarray:
        return self._acc.per_image_stats()


@dataclass
class SemsegEvaluation:
    """The outcome of scoring a submission."""

    metrics: dict[str, Any]
    image_ids: list[str]
    per_image: np.ndarray | None
    predictions_sha256: str
    ground_truth_sha256: str
    confusion: np.ndarray = field(repr=False)


def _imap(check: PairCheck, tasks: Iterator[tuple], workers: int) -> Iterator[ImageResult]:
    if workers <= 1:
        _init_worker(check)
        yield from map(_score_task, tasks)
        return
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(workers, initializer=_init_worker, initargs=(check,)) as pool:
        yield from pool.imap(_score_task, tasks, chunksize=CHUNKSIZE)


def match_ids(protocol: Protocol, sub: SemsegSubmission, gt_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """The ground-truth ids the submission has, and a problem line per missing, extra or foreign file."""
    sub_ids = set(sub.ids())
    problems = [f"{sub.path}: missing prediction for image {i!r} (expected {i}.png)"
                for i in gt_ids if i not in sub_ids]
    gt_set = set(gt_ids)
    problems += [f"{sub.member_name(i)}: no image {i!r} in {protocol.id} ({protocol.split}); remove it or "
                 f"check the file name" for i in sorted(sub_ids - gt_set)]
    problems += [f"{sub.path}/{n}: not a .png; remove it" for n in sub.foreign_files]
    return [i for i in gt_ids if i in sub_ids], problems


def tasks_for(sub: SemsegSubmission, gt: SemsegGroundTruth, ids: Iterable[str]) -> Iterator[tuple]:
    """``read_and_score`` tasks for ``ids``: archives are read here, directories by the worker."""
    for image_id in ids:
        pred_src: str | bytes = str(sub.file_path(image_id)) if sub.is_directory else sub.read(image_id)
        yield image_id, pred_src, sub.member_name(image_id), str(gt.label_path(image_id))


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def evaluate_semseg_submission(protocol: Protocol, predictions: Path | str, data_root: Path | str,
                               workers: int | None = None, bootstrap: int = 0, seed: int = 0,
                               keep_per_image: bool = False, progress: bool = True) -> SemsegEvaluation:
    """Validate and score a semseg submission against ``protocol``'s ground truth.

    ``bootstrap`` > 0 adds ``metrics["ci95"]`` (percentile intervals of mIoU and mIoU_novel over
    ``bootstrap`` image resamples, seeded by ``seed``); per-image statistics are then kept and
    returned, as they are with ``keep_per_image``. Raises :class:`ValidationError` listing every
    problem (missing/extra ids, unreadable files, wrong mode, size or values).
    """
    if protocol.task != "semseg":
        raise OvbenchError(f"protocol {protocol.id} is a {protocol.task} protocol, not semseg")
    protocol.require_classes()
    gt = SemsegGroundTruth(protocol, data_root)
    gt_ids = gt.ids()
    sub = SemsegSubmission(predictions)
    try:
        matched, problems = match_ids(protocol, sub, gt_ids)
        acc = SemsegAccumulator(protocol, keep_per_image=keep_per_image or bootstrap > 0)
        check = PairCheck(protocol.num_classes, protocol.ignore_label)
        pred_digests, gt_digests = [], []
        results = _imap(check, tasks_for(sub, gt, matched), workers or default_workers())
        for r in tqdm(results, total=len(matched), desc=f"evaluate {protocol.id}", unit="img",
                      disable=not progress):
            problems.extend(r.problems)
            pred_digests.append((r.image_id, r.pred_sha256))
            gt_digests.append((r.image_id, r.gt_sha256))
            if r.confusion is not None and not problems:
                acc.add(r.image_id, r.confusion)
    finally:
        sub.close()
    if problems:
        raise ValidationError(f"{sub.path}: submission for {protocol.id} is invalid", problems,
                              fix="see docs: one single-channel PNG per image, named <image_id>.png, "
                                  "pixel = class index")
    metrics = acc.metrics()
    per_image = acc.per_image_stats() if acc.keep_per_image else None
    if bootstrap > 0:
        metrics["ci95"] = bootstrap_ci(per_image, {"mIoU": miou_metric(),
                                                   "mIoU_novel": miou_metric(protocol.class_ids("novel"))},
                                       num_boot=bootstrap, seed=seed)
    return SemsegEvaluation(metrics=metrics, image_ids=list(acc.image_ids), per_image=per_image,
                            predictions_sha256=combined_digest(pred_digests),
                            ground_truth_sha256=combined_digest(gt_digests), confusion=acc.confusion.matrix)
