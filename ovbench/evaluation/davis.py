"""DAVIS 2017 J&F evaluation of a prediction folder against a ground-truth folder.

Both folders hold ``<sequence>/<frame>.png``: palette or grayscale PNGs whose pixel values are
object ids (0 = background). The protocol is davis2017-evaluation's (ac7c43f):

* The objects of a sequence are the ids present in its first GT frame; ids that appear only later
  are background, as in the reference.
* ``semi-supervised``: the first and the last frame are not scored; GT 255 is background (the
  reference passes no void mask in this task); every prediction id must be one of the sequence's
  object ids; object k is scored as GT ``== k`` against prediction ``== k``.
* ``unsupervised``: every frame is scored; GT 255 is void; the proposals are the distinct non-zero
  ids of the prediction over the sequence (at most 20); the proposals are matched one-to-one to
  the objects by the Hungarian method on the sequence mean of (J+F)/2, with empty proposals added
  when there are fewer proposals than objects.
* Per object: Mean, Recall and Decay of J and F over its frames
  (:func:`ovbench.metrics.davis.statistics`); the global table averages them over all objects of
  all sequences and J&F-Mean = (J-Mean + F-Mean) / 2.

Deliberate differences from the reference; results are identical whenever its assumptions hold
(object ids 1..K in the first GT frame, proposal ids 1..N, at most 255 frames):

* object ids need not be contiguous (the reference scores every id up to the largest as an
  object, so a gap becomes an always-empty object);
* proposal ids need not be 1..N (the reference counts id values: it adds an empty proposal per
  missing id and rejects any id above 20);
* unsupervised per-object rows are labelled by the GT object they are matched to (the reference
  lists them in proposal order and labels them 1, 2, ... in that order);
* Decay is right for any number of frames (the reference's uint8 bin indices overflow from 256);
* every problem of a submission is reported at once instead of exiting at the first one, and
  nothing is returned (or written by the CLI) unless there is none.

Sequences are read, checked and scored in worker processes, one sequence per task; once a problem
is found, the remaining sequences are only checked.
"""
from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from ovbench.data.label_io import LabelDecodeError, decode_label_map
from ovbench.errors import OvbenchError, ValidationError
from ovbench.metrics.davis import jf_label_map_stack, jf_pairs, match_unsupervised, statistics

TASKS = ("semi-supervised", "unsupervised")
MAX_PROPOSALS = 20
VOID_LABEL = 255
#: The reference's global table, in its column order.
GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
#: Pixels scored per call in the semi-supervised task (4 frames at 854x480): enough frames to share
#: the per-call work, few enough to stay in the CPU caches.
CHUNK_PIXELS = 2_000_000
FIX = ("write one single-channel PNG per GT frame at <pred>/<sequence>/<frame>.png, same size as the GT, "
       "pixel = object id (0 = background)")


@dataclass
class ObjectScores:
    """One GT object of one sequence: per-frame J and F, shape ``(T,)`` over the scored frames."""

    sequence: str
    object_id: int
    j: np.ndarray = field(repr=False)
    f: np.ndarray = field(repr=False)
    proposal: int | None = None  # unsupervised: the matched prediction id, None for an empty proposal

    @property
    def name(self) -> str:
        """``<sequence>_<object id>``, the reference's row name."""
        return f"{self.sequence}_{self.object_id}"

    def stats(self) -> dict[str, dict[str, float]]:
        """``{"J": {"mean", "recall", "decay"}, "F": {...}}``."""
        return {"J": statistics(self.j), "F": statistics(self.f)}


@dataclass
class DavisResult:
    """Scores of a whole evaluation: one :class:`ObjectScores` per GT object, in sequence order."""

    task: str
    frames: dict[str, list[str]]  # scored frame names per sequence
    objects: list[ObjectScores]

    def global_metrics(self) -> dict[str, float]:
        """The reference's global table: means over all objects, keys :data:`GLOBAL_COLUMNS`."""
        stats = [o.stats() for o in self.objects]
        mean = {f"{m}-{col}": float(np.mean([s[m][key] for s in stats]))
                for m in ("J", "F") for col, key in (("Mean", "mean"), ("Recall", "recall"), ("Decay", "decay"))}
        mean["J&F-Mean"] = (mean["J-Mean"] + mean["F-Mean"]) / 2
        return {col: mean[col] for col in GLOBAL_COLUMNS}


@dataclass(frozen=True)
class _Job:
    """One sequence to score: GT frames in order, and the prediction files of the scored ones."""

    sequence: str
    task: str
    gt_files: tuple[Path, ...]
    pred_files: tuple[Path, ...]  # aligned with the scored GT frames


@dataclass
class _Outcome:
    sequence: str
    problems: list[str]
    objects: list[ObjectScores]


def _frames(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.png") if p.is_file())


def _sequences(root: Path, what: str) -> dict[str, list[str]]:
    """Sub-folders of ``root`` that hold PNGs, with their sorted frame names."""
    if not root.is_dir():
        raise OvbenchError(f"{what} folder {root} does not exist or is not a folder")
    found = {}
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and not sub.name.startswith("."):
            frames = _frames(sub)
            if frames:
                found[sub.name] = frames
    return found


def _plan(gt_dir: Path, pred_dir: Path, task: str) -> list[_Job]:
    """Check the folder structure; raise one :class:`ValidationError` listing every problem."""
    if task not in TASKS:
        raise OvbenchError(f"task {task!r}: choose one of {', '.join(TASKS)}")
    gt, pred = _sequences(gt_dir, "ground-truth"), _sequences(pred_dir, "prediction")
    if not gt:
        raise OvbenchError(f"ground-truth folder {gt_dir} has no <sequence>/<frame>.png files")
    problems = [f"{name}: prediction sequence not in the ground truth" for name in sorted(set(pred) - set(gt))]
    jobs = []
    for name, frames in gt.items():
        scored = frames[1:-1] if task == "semi-supervised" else frames
        if not scored:
            problems.append(f"{name}: ground truth has {len(frames)} frame(s); the semi-supervised task scores "
                            f"all but the first and the last, so it needs at least 3")
            continue
        if name not in pred:
            problems.append(f"{name}: sequence missing from the predictions ({len(scored)} frames expected)")
            continue
        missing = sorted(set(scored) - set(pred[name]))
        if missing:
            shown = ", ".join(f"{m}.png" for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
            problems.append(f"{name}: {len(missing)} of {len(scored)} frames missing from the predictions ({shown})")
            continue
        jobs.append(_Job(name, task, tuple(gt_dir / name / f"{f}.png" for f in frames),
                         tuple(pred_dir / name / f"{f}.png" for f in scored)))
    if problems:
        raise ValidationError(f"{pred_dir}: DAVIS {task} predictions are invalid", problems, FIX)
    return jobs


def _read(path: Path, where: str, problems: list[str]) -> np.ndarray | None:
    try:
        return decode_label_map(path.read_bytes())[0]
    except (OSError, LabelDecodeError) as e:
        problems.append(f"{where}/{path.name}: {e}")
        return None


def _read_sequence(job: _Job, problems: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """The first GT frame followed by the scored ones (semi-supervised) or all GT frames
    (unsupervised), and the predictions of the scored frames; sizes are checked into
    ``problems``. None when a file could not be read."""
    offset = 1 if job.task == "semi-supervised" else 0
    gt_paths = job.gt_files[:1] + job.gt_files[offset:offset + len(job.pred_files)] if offset else job.gt_files
    gts = [_read(p, f"ground truth {job.sequence}", problems) for p in gt_paths]
    preds = [_read(p, job.sequence, problems) for p in job.pred_files]
    if any(a is None for a in gts + preds):
        return None
    shape = gts[0].shape
    for path, gt in zip(gt_paths, gts):
        if gt.shape != shape:
            problems.append(f"ground truth {job.sequence}/{path.name}: size {gt.shape[1]}x{gt.shape[0]} differs from "
                            f"the sequence's first frame ({shape[1]}x{shape[0]})")
    for path, pred in zip(job.pred_files, preds):
        if pred.shape != shape:
            problems.append(f"{job.sequence}/{path.name}: size {pred.shape[1]}x{pred.shape[0]} but the ground truth "
                            f"is {shape[1]}x{shape[0]}; write predictions at the annotation size")
    return gts, preds


def _object_ids(first_gt: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(first_gt) if v > 0 and v != VOID_LABEL]


def _foreign_ids(job: _Job, preds: list[np.ndarray], ids: list[int]) -> list[str]:
    """Semi-supervised: a problem line per prediction frame holding ids that are not objects."""
    allowed, problems = set(ids) | {0}, []
    for path, pred in zip(job.pred_files, preds):
        foreign = sorted(set(np.unique(pred).tolist()) - allowed)
        if foreign:
            problems.append(f"{job.sequence}/{path.name}: ids {foreign} are not objects of the sequence "
                            f"(its first GT frame has {ids})")
    return problems


def _score_semi(sequence: str, gts: list[np.ndarray], preds: list[np.ndarray], ids: list[int]) -> list[ObjectScores]:
    step = max(1, CHUNK_PIXELS // gts[0].size)
    scores = [jf_label_map_stack(np.stack(gts[t:t + step]), np.stack(preds[t:t + step]), ids)
              for t in range(0, len(gts), step)]
    j, f = np.concatenate([s[0] for s in scores]), np.concatenate([s[1] for s in scores])  # (T, K)
    return [ObjectScores(sequence, k, j[:, i], f[:, i]) for i, k in enumerate(ids)]


def _score_unsupervised(sequence: str, gts: list[np.ndarray], preds: list[np.ndarray], ids: list[int],
                        proposals: list[int]) -> list[ObjectScores]:
    obj, prop = np.array(ids)[:, None, None], np.array(proposals, dtype=np.int64)[:, None, None]
    n = len(proposals)
    j_frames, f_frames = [], []
    for gt, pred in zip(gts, preds):
        masks = pred[None] == prop
        if n < len(ids):  # the empty proposal the reference pads with
            masks = np.concatenate([masks, np.zeros((1, *pred.shape), bool)])
        j, f = jf_pairs(gt[None] == obj, masks, gt == VOID_LABEL)
        j_frames.append(j)
        f_frames.append(f)
    j_all, f_all = np.stack(j_frames, axis=2), np.stack(f_frames, axis=2)  # (N [+1], K, T)
    empty = (j_all[n], f_all[n]) if n < len(ids) else (None, None)
    j_m, f_m, assigned = match_unsupervised(j_all[:n], f_all[:n], *empty)
    return [ObjectScores(sequence, k, j_m[i], f_m[i], proposals[a] if a >= 0 else None)
            for i, (k, a) in enumerate(zip(ids, assigned.tolist()))]


#: Set once a problem is found: workers then only check their sequences and score nothing.
_STOP: Event | None = None


def _init_worker(stop: Event | None) -> None:
    global _STOP
    _STOP = stop


def _score_sequence(job: _Job) -> _Outcome:
    """Read and check one sequence, then score it unless it or an earlier one has a problem."""
    problems: list[str] = []
    frames = _read_sequence(job, problems)
    if frames is None or problems:
        return _Outcome(job.sequence, problems, [])
    gts, preds = frames
    ids = _object_ids(gts[0])
    if not ids:
        return _Outcome(job.sequence, [f"ground truth {job.sequence}/{job.gt_files[0].name}: the first frame has "
                                       f"no object (only 0 and {VOID_LABEL})"], [])
    if job.task == "semi-supervised":
        problems = _foreign_ids(job, preds, ids)
    else:
        proposals = sorted(set().union(*(np.unique(p).tolist() for p in preds)) - {0})
        if len(proposals) > MAX_PROPOSALS:
            problems = [f"{job.sequence}: {len(proposals)} proposal ids; the unsupervised task allows at most "
                        f"{MAX_PROPOSALS} per sequence"]
    if problems or (_STOP is not None and _STOP.is_set()):
        return _Outcome(job.sequence, problems, [])
    if job.task == "semi-supervised":
        return _Outcome(job.sequence, [], _score_semi(job.sequence, gts[1:], preds, ids))
    return _Outcome(job.sequence, [], _score_unsupervised(job.sequence, gts, preds, ids, proposals))


def _context() -> mp.context.BaseContext:
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def _run(jobs: Sequence[_Job], workers: int, stop: Event) -> Iterator[_Outcome]:
    if workers <= 1 or len(jobs) <= 1:
        _init_worker(stop)
        yield from map(_score_sequence, jobs)
        return
    with _context().Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(stop,)) as pool:
        yield from pool.imap(_score_sequence, jobs, chunksize=1)


def evaluate_davis(gt_dir: Path | str, pred_dir: Path | str, task: str, workers: int = 1,
                   progress: bool = True) -> DavisResult:
    """Score ``pred_dir`` against ``gt_dir`` for ``task`` (``semi-supervised`` or ``unsupervised``).

    The folder structure is checked first (missing or extra sequences, missing frames); then each
    sequence is read, checked (unreadable files, sizes, object ids, number of proposals) and scored
    in ``workers`` processes. Any problem raises one :class:`ValidationError` listing all of them
    and no result is returned.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    jobs = _plan(gt_dir, pred_dir, task)
    stop = _context().Event()
    problems: list[str] = []
    objects: list[ObjectScores] = []
    for outcome in tqdm(_run(jobs, workers, stop), total=len(jobs), desc=f"DAVIS {task}", unit="seq",
                        disable=not progress):
        if outcome.problems:
            stop.set()
        problems.extend(outcome.problems)
        objects.extend(outcome.objects)
    if problems:
        raise ValidationError(f"{pred_dir}: DAVIS {task} predictions are invalid", problems, FIX)
    frames = {job.sequence: [p.stem for p in job.pred_files] for job in jobs}
    return DavisResult(task, frames, objects)
