"""Leaderboard plots (PNG): base-vs-novel scatter and accuracy-vs-latency with its Pareto front.

Figures are built with :class:`matplotlib.figure.Figure` and rendered by the Agg canvas, never
through ``pyplot``, so no global backend or figure state is touched. Reported rows are hollow
markers, reproduced rows filled. A latency plot holds the speed records of one device class only:
CPU and GPU latencies are never put on one axis.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ovbench.leaderboard.columns import TaskView, as_number, metric_at
from ovbench.leaderboard.render import ProtocolInfo
from ovbench.leaderboard.select import Row, device_class

COLOURS = {"reproduced": "tab:blue", "reported": "tab:orange"}
DPI = 120


def _new_figure() -> Figure:
    fig = Figure(figsize=(6.4, 4.8), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _marker_kwargs(source: str) -> dict[str, Any]:
    colour = COLOURS.get(source, "tab:gray")
    face = "none" if source == "reported" else colour
    return {"marker": "o", "s": 42, "facecolors": face, "edgecolors": colour, "linewidths": 1.5, "zorder": 3}


def _source_legend(ax, sources: set[str], extra: Sequence[Line2D] = ()) -> None:
    handles = [Line2D([], [], linestyle="none", marker="o", markersize=7, markeredgewidth=1.5,
                      color=COLOURS.get(s, "tab:gray"),
                      markerfacecolor="none" if s == "reported" else COLOURS.get(s, "tab:gray"),
                      label=s) for s in sorted(sources)]
    ax.legend(handles=[*handles, *extra], loc="best", fontsize=8)


def _annotate(ax, x: float, y: float, text: str, left: bool) -> None:
    """A point's label, to its right, or to its left when ``left`` (points near the right edge)."""
    ax.annotate(text, (x, y), xytext=(-5 if left else 5, 4), textcoords="offset points", fontsize=8,
                ha="right" if left else "left")


def _right_half(value: float, lo: float, hi: float, log: bool = False) -> bool:
    if log:
        value, lo, hi = math.log(value), math.log(lo), math.log(hi)
    return hi > lo and value > (lo + hi) / 2


def _label(row: Row) -> str:
    return row.method + (" (stale)" if row.stale else "")


def base_novel_points(rows: Sequence[Row], view: TaskView) -> list[tuple[float, float, Row]]:
    """``(base, novel, row)`` for rows that have both of the view's base and novel metrics."""
    if view.base_novel is None:
        return []
    points = []
    for r in rows:
        b = as_number(metric_at(r.metrics, view.base_novel[0]))
        n = as_number(metric_at(r.metrics, view.base_novel[1]))
        if b is not None and n is not None:
            points.append((b, n, r))
    return sorted(points, key=lambda p: (p[2].method, p[2].source))


def base_novel_plot(rows: Sequence[Row], view: TaskView, info: ProtocolInfo, path: Path) -> Path | None:
    """Scatter of base vs novel metric, one labelled point per row; ``None`` when no row has both."""
    points = base_novel_points(rows, view)
    if not points:
        return None
    fig = _new_figure()
    ax = fig.add_subplot()
    lo = min(min(b, n) for b, n, _ in points)
    hi = max(max(b, n) for b, n, _ in points)
    pad = max(2.0, 0.08 * (hi - lo))
    lim = (max(0.0, lo - pad), hi + pad)
    for b, n, r in points:
        ax.scatter([b], [n], **_marker_kwargs(r.source))
        _annotate(ax, b, n, _label(r), _right_half(b, *lim))
    ax.plot(lim, lim, linestyle="--", color="0.6", linewidth=1, zorder=1)
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(view.base_novel_labels[0])
    ax.set_ylabel(view.base_novel_labels[1])
    ax.set_title(f"{info.id}: {view.base_novel_labels[1]} vs {view.base_novel_labels[0]}", fontsize=10)
    ax.grid(True, alpha=0.3)
    _source_legend(ax, {r.source for _, _, r in points},
                   [Line2D([], [], linestyle="--", color="0.6", label="novel = base")])
    return _save(fig, path)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (lower-or-equal x and higher y), by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def setting_text(speed: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    """``key=value, ...`` of the speed record's setting (only ``keys`` when given)."""
    setting = speed.get("setting") or {}
    return ", ".join(f"{k}={setting[k]}" for k in sorted(setting) if keys is None or k in keys)


def differing_keys(speeds: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(setting keys whose values differ between the records, keys with one value in all of them);
    keys some records lack are in neither."""
    settings = [s.get("setting") or {} for s in speeds]
    keys = sorted(set.intersection(*(set(s) for s in settings))) if settings else []
    values = {k: {repr(s[k]) for s in settings} for k in keys}
    return [k for k in keys if len(values[k]) > 1], [k for k in keys if len(values[k]) == 1]


def latency_points(rows: Sequence[Row], speeds: Sequence[Mapping[str, Any]], view: TaskView,
                   dev_class: str) -> list[tuple[float, float, Row, Mapping[str, Any]]]:
    """``(median latency ms, primary metric, row, speed record)`` joined by method name.

    Only speed records of ``dev_class``. One point per method: its reproduced row when it has one
    with the primary metric (the latency was measured on ovbench's run), else its reported row.
    """
    by_method = {str(s["method"]): s for s in speeds if device_class(s) == dev_class}
    best: dict[str, Row] = {}
    for r in sorted(rows, key=lambda r: (r.method, r.source != "reproduced", r.source)):
        if r.method in by_method and r.method not in best and \
                as_number(metric_at(r.metrics, view.primary)) is not None:
            best[r.method] = r
    return [(float(by_method[m]["latency_ms"]["median"]), as_number(metric_at(r.metrics, view.primary)),
             r, by_method[m]) for m, r in sorted(best.items())]


def latency_plot(rows: Sequence[Row], speeds: Sequence[Mapping[str, Any]], view: TaskView,
                 info: ProtocolInfo, dev_class: str, path: Path) -> Path | None:
    """Primary metric vs median latency for one device class; ``None`` when nothing joins."""
    points = latency_points(rows, speeds, view, dev_class)
    if not points:
        return None
    devices = sorted({str((s.get("device") or {}).get("name", "?")) for *_, s in points})
    differing, common = differing_keys([s for *_, s in points])
    xs = [p[0] for p in points]
    log = max(xs) / min(xs) > 10
    fig = _new_figure()
    ax = fig.add_subplot()
    for x, y, r, s in points:
        ax.scatter([x], [y], **_marker_kwargs(r.source))
        label = _label(r)
        if len(devices) > 1:
            label += f" @ {(s.get('device') or {}).get('name', '?')}"
        if differing:
            label += f" [{setting_text(s, differing)}]"
        _annotate(ax, x, y, label, _right_half(x, min(xs), max(xs), log))
    front = pareto_front([(p[0], p[1]) for p in points])
    fx, fy = [points[i][0] for i in front], [points[i][1] for i in front]
    ax.step(fx, fy, where="post", color="tab:green", linewidth=1.2, zorder=2)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"median latency (ms), {dev_class}")
    ax.set_ylabel(view.primary_label)
    title = f"{info.id}: {view.primary_label} vs latency ({dev_class}"
    title += f", {devices[0]})" if len(devices) == 1 else ")"
    shared = setting_text(points[0][3], common)
    if shared:
        title += "\n" + "\n".join(textwrap.wrap(shared, width=70))
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    _source_legend(ax, {r.source for _, _, r, _ in points},
                   [Line2D([], [], color="tab:green", label="Pareto front")] if len(front) > 1 else [])
    return _save(fig, path)
