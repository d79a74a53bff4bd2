"""Leaderboards built from provenance-carrying result records.

``build_leaderboards(root, out)`` reads ``root/results`` (and ``root/speed``) and writes, per
protocol, a Markdown / CSV / LaTeX / HTML table and PNG plots, plus an index ``README.md``.
Modules: :mod:`.columns` (which metrics each task and evaluation style shows), :mod:`.select`
(latest row per method and source, staleness), :mod:`.frames` (pandas tables), :mod:`.render`
(file text), :mod:`.plots`, :mod:`.index` and :mod:`.build`.
"""
from ovbench.leaderboard.build import BuildReport, build_leaderboards
from ovbench.leaderboard.columns import TASK_VIEWS, Column, TaskView

__all__ = ["BuildReport", "Column", "TASK_VIEWS", "TaskView", "build_leaderboards"]
