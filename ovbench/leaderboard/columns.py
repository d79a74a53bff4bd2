"""Which metrics a leaderboard shows, per task and evaluation style: a small data table.

A :class:`Column` names a display label and the path of keys into a record's ``metrics``
(``("bbox", "AP50_novel@100")`` reads ``metrics["bbox"]["AP50_novel@100"]``). ``kind="interval"``
reads a ``[lo, hi]`` pair (a bootstrap confidence interval). ``optional`` columns are left out of
a table when no row has a value; the others always show, with "–" where a row lacks the metric.

:data:`TASK_VIEWS` is keyed by task (``"semseg"``) or, where protocols of one task are scored in
different styles, by ``"<task>:<style>"`` with the protocol's ``evaluation.style``. Every
detection protocol is task ``detection``; COCO-style ones (``coco-ovd``, ``synth-ovd``) show box
AP50 novel / base / all at 100 and at 300 detections per image (mask AP50 when recorded), sorted
by box AP50 novel @100; LVIS-style ones (``lvis-ovd``) show mask APr / APc / APf / AP and box
APr / AP at 300, sorted by mask APr, with no base-vs-novel plot (LVIS base is frequent + common,
so no single metric is "base"). :func:`view_for` takes the style's view, else the task's, else
:func:`generic_view` (every scalar metric found in the records, sorted by name). To add a task or
a style, add an entry.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

MetricPath = tuple[str, ...]


@dataclass(frozen=True)
class Column:
    """One metric column of a leaderboard table."""

    label: str
    path: MetricPath
    kind: str = "value"          # "value": a number; "interval": a [lo, hi] pair
    optional: bool = False

    @property
    def key(self) -> str:
        """The machine-readable name used in CSV headers (the dotted metric path)."""
        return ".".join(self.path)

    def csv_keys(self) -> tuple[str, ...]:
        return (f"{self.key}.lo", f"{self.key}.hi") if self.kind == "interval" else (self.key,)


@dataclass(frozen=True)
class TaskView:
    """How one task's leaderboard looks.

    ``primary`` is the path of the metric tables sort by (descending), the overview pivot shows
    and the accuracy-vs-latency plot puts on its y axis. ``base_novel`` is the pair of paths the
    base-vs-novel scatter plots (``None``: no such plot for this task). ``note`` is a sentence the
    Markdown page adds to its legend (how to read the columns).
    """

    columns: tuple[Column, ...]
    primary: MetricPath
    primary_label: str
    base_novel: tuple[MetricPath, MetricPath] | None = None
    base_novel_labels: tuple[str, str] = ("base", "novel")
    note: str = ""


DETECTION_NOTE = ("@N: AP over each image's N highest-scoring detections; numbers at different caps are "
                  "not comparable. box / mask: AP from box IoU / mask IoU.")

TASK_VIEWS: dict[str, TaskView] = {
    "semseg": TaskView(
        columns=(
            Column("mIoU", ("mIoU",)),
            Column("mIoU_base", ("mIoU_base",)),
            Column("mIoU_novel", ("mIoU_novel",)),
            Column("hIoU", ("hIoU",)),
            Column("mIoU_unseen", ("mIoU_unseen",), optional=True),
            Column("mIoU_mmseg", ("mIoU_mmseg",)),
            Column("pAcc", ("pAcc",)),
            Column("mAcc", ("mAcc",)),
            Column("mIoU 95% CI", ("ci95", "mIoU"), kind="interval", optional=True),
        ),
        primary=("mIoU",),
        primary_label="mIoU",
        base_novel=(("mIoU_base",), ("mIoU_novel",)),
        base_novel_labels=("mIoU base", "mIoU novel"),
    ),
    "detection:coco": TaskView(
        columns=(
            *(Column(f"AP50 {split} @{cap} (box)", ("bbox", f"AP50_{split}@{cap}"))
              for cap in (100, 300) for split in ("novel", "base", "all")),
            *(Column(f"AP50 {split} @{cap} (mask)", ("segm", f"AP50_{split}@{cap}"), optional=True)
              for cap in (100, 300) for split in ("novel", "all")),
        ),
        primary=("bbox", "AP50_novel@100"),
        primary_label="box AP50 novel @100",
        base_novel=(("bbox", "AP50_base@100"), ("bbox", "AP50_novel@100")),
        base_novel_labels=("box AP50 base @100", "box AP50 novel @100"),
        note=DETECTION_NOTE,
    ),
    "detection:lvis": TaskView(
        columns=(
            *(Column(f"{name} @300 (mask)", ("segm", f"{name}@300"))
              for name in ("APr", "APc", "APf", "AP")),
            *(Column(f"{name} @300 (box)", ("bbox", f"{name}@300")) for name in ("APr", "AP")),
        ),
        primary=("segm", "APr@300"),
        primary_label="mask APr @300",
        note=DETECTION_NOTE,
    ),
    "video-semseg": TaskView(
        columns=(
            Column("mIoU", ("mIoU",)),
            Column("mIoU_base", ("mIoU_base",)),
            Column("mIoU_novel", ("mIoU_novel",)),
            Column("hIoU", ("hIoU",)),
            *(Column(f"{name}{n}", (f"{name}{n}",)) for n in (8, 16) for name in ("mVC", "mVCc")),
            *(Column(f"mVCc{n}_novel", (f"mVCc{n}_novel",), optional=True) for n in (8, 16)),
        ),
        primary=("mIoU",),
        primary_label="mIoU",
        base_novel=(("mIoU_base",), ("mIoU_novel",)),
        base_novel_labels=("mIoU base", "mIoU novel"),
        note=("mIoU is per frame over all frames; mVC_n is VSPW's video consistency over windows of n frames "
              "(a constant output scores 100), mVCc_n the correctness-aware variant."),
    ),
    "video-instance": TaskView(
        columns=(
            *(Column(f"AP {split}", (f"AP_{split}",)) for split in ("all", "base", "novel")),
            Column("AP50 all", ("AP50_all",)),
            *(Column(f"J&F{suffix}", (f"J&F{suffix}",)) for suffix in ("", "_base", "_novel")),
        ),
        primary=("AP_all",),
        primary_label="video AP",
        base_novel=(("AP_base",), ("AP_novel",)),
        base_novel_labels=("video AP base", "video AP novel"),
        note=("Video AP: YouTube-VIS spatio-temporal IoU, up to 100 tracks per video; base / novel averaged over "
              "that partition's classes only. J&F: class-agnostic, the 20 best tracks per video matched to the "
              "ground truth (DAVIS unsupervised)."),
    ),
}


def metric_at(metrics: Mapping[str, Any] | None, path: Sequence[str]) -> Any:
    """The value at ``path`` inside ``metrics``, or ``None`` when any key on the way is absent."""
    node: Any = metrics
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def as_number(value: Any) -> float | None:
    """``value`` as a float, or ``None`` for missing, null, non-numeric or non-finite values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def as_interval(value: Any) -> tuple[float, float] | None:
    """A ``[lo, hi]`` pair as two floats, or ``None``."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    lo, hi = as_number(value[0]), as_number(value[1])
    return None if lo is None or hi is None else (lo, hi)


def _is_per_class(d: Mapping[str, Any]) -> bool:
    return bool(d) and all(str(k).isdigit() for k in d)


def scalar_paths(metrics: Mapping[str, Any], prefix: MetricPath = ()) -> Iterable[MetricPath]:
    """Paths of the numeric leaves of ``metrics``, skipping per-class tables and ``ci95``."""
    for key, value in metrics.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping):
            if key == "ci95" or _is_per_class(value):
                continue
            yield from scalar_paths(value, path)
        elif as_number(value) is not None or value is None:
            yield path


def generic_view(metric_dicts: Iterable[Mapping[str, Any]], preferred: Sequence[str] = ()) -> TaskView:
    """A view for a task without an entry in :data:`TASK_VIEWS`: every scalar metric, by name.

    The primary metric is the first of ``preferred`` (the protocol's declared metrics) that the
    records have, else the first column.
    """
    paths = sorted({p for m in metric_dicts for p in scalar_paths(m or {})})
    columns = tuple(Column(".".join(p), p) for p in paths)
    primary: MetricPath = ()
    for name in preferred:
        if (name,) in paths:
            primary = (name,)
            break
    if not primary and paths:
        primary = paths[0]
    return TaskView(columns=columns, primary=primary, primary_label=".".join(primary) or "score")


def view_for(task: str, metric_dicts: Iterable[Mapping[str, Any]], preferred: Sequence[str] = (),
             style: str | None = None) -> TaskView:
    """The :class:`TaskView` for ``task`` scored in evaluation ``style``; see the module docs.

    ``style`` is the protocol's ``evaluation.style`` (``None`` when it has none or is no longer
    registered); the generic view is built from ``metric_dicts`` and ``preferred``.
    """
    view = TASK_VIEWS.get(f"{task}:{style}") if style else None
    return view or TASK_VIEWS.get(task) or generic_view(metric_dicts, preferred)
