"""Build every leaderboard file from the records under a leaderboard root.

For each protocol with records: ``<out>/<protocol>.{md,csv,tex,html}`` and plots under
``<out>/plots/``, and ``<out>/<protocol>__<study>.{md,csv}`` for each multi-seed study
(:mod:`ovbench.leaderboard.studies`); then the index ``<out>/README.md`` (only when all protocols
are built, so that a ``--protocol`` rebuild never drops the others from the index).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ovbench.errors import OvbenchError
from ovbench.leaderboard.columns import view_for
from ovbench.leaderboard.frames import LATEX, MARKDOWN, add_speed, display_frame, full_frame
from ovbench.leaderboard.index import IndexEntry, index_page
from ovbench.leaderboard.plots import base_novel_plot, latency_plot
from ovbench.leaderboard.render import (csv_text, describe_protocol, html_page, latex_table,
                                        markdown_page, markdown_table)
from ovbench.leaderboard.select import (UNVERIFIED, Row, current_protocol, device_class, select_rows,
                                        select_speed)
from ovbench.leaderboard.studies import split_studies, study_display, study_frame
from ovbench.records.store import atomic_write_text, load_result_records, load_speed_records, slug


@dataclass
class BuildReport:
    """What a build wrote: table and index files, plots, and the rows that need attention."""

    out: Path
    protocols: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    rows: int = 0
    stale_rows: int = 0
    unverified_rows: int = 0
    stale: list[str] = field(default_factory=list)       # "protocol / method [source]: reason"
    index: Path | None = None

    def summary(self) -> str:
        """A few lines for the CLI to print."""
        lines = [f"leaderboards: {len(self.protocols)} protocol(s), {self.rows} row(s), "
                 f"{len(self.files)} file(s) and {len(self.plots)} plot(s) written to {self.out}"]
        if self.index is None:
            lines.append("  index README.md not rebuilt (only some protocols were built)")
        if self.stale_rows:
            lines.append(f"⚠ {self.stale_rows} stale row(s), kept and marked; re-run them under "
                         f"today's protocol:")
            lines += [f"  {s}" for s in self.stale]
        if self.unverified_rows:
            lines.append(f"? {self.unverified_rows} row(s) not checked for staleness: their "
                         f"protocol's class table comes from the dataset (pass its data root)")
        return "\n".join(lines)


def _load(root: Path, protocol: str | None) -> list[dict[str, Any]]:
    if not (root / "results").is_dir():
        raise OvbenchError(f"{root}: no results/ folder, so no leaderboard to build; pass the "
                           f"leaderboard root (the folder holding results/ and speed/) or record "
                           f"a result first")
    records = load_result_records(root)
    if protocol is None:
        return records
    chosen = [r for r in records if r["protocol"]["id"] == protocol]
    if not chosen:
        present = sorted({r["protocol"]["id"] for r in records})
        raise OvbenchError(f"{root}: no result records for protocol {protocol!r}; records exist for: "
                           f"{', '.join(present) or 'none'}")
    return chosen


def _load_speed(root: Path) -> list[Mapping[str, Any]]:
    return select_speed(load_speed_records(root)) if (root / "speed").is_dir() else []


def _build_protocol(pid: str, rows: Sequence[Row], speeds: Sequence[Mapping[str, Any]], out: Path,
                    report: BuildReport) -> IndexEntry:
    info = describe_protocol(pid, rows)
    p = current_protocol(pid)
    view = view_for(info.task, [r.metrics for r in rows], preferred=p.metrics if p else (),
                    style=p.evaluation.get("style") if p else None)
    name = slug(pid)

    plots: list[tuple[str, Path]] = []
    png = base_novel_plot(rows, view, info, out / "plots" / f"{name}__base-novel.png")
    if png is not None:
        plots.append(("base vs novel", png))
    for dev in sorted({device_class(s) for s in speeds}):
        png = latency_plot(rows, speeds, view, info, dev, out / "plots" / f"{name}__latency-{slug(dev)}.png")
        if png is not None:
            plots.append((f"{view.primary_label} vs latency, {dev}", png))

    full = add_speed(full_frame(rows, view), speeds)
    links = [("CSV", f"{name}.csv"), ("LaTeX", f"{name}.tex"), ("HTML", f"{name}.html")]
    images = [(alt, png.relative_to(out).as_posix()) for alt, png in plots]
    texts = {
        f"{name}.md": markdown_page(info, display_frame(full, view, MARKDOWN), rows, view.primary_label,
                                    links, images, note=view.note),
        f"{name}.csv": csv_text(full),
        f"{name}.tex": latex_table(info, display_frame(full, view, LATEX)),
        f"{name}.html": html_page(info, display_frame(full, view, MARKDOWN), view.primary_label),
    }
    for fname, text in texts.items():
        atomic_write_text(out / fname, text)
        report.files.append(out / fname)
    report.plots += [png for _, png in plots]
    return IndexEntry(info, rows, [("Markdown", f"{name}.md"), *links,
                                   *[(alt, href) for alt, href in images]])


def _build_study(pid: str, study: str, rows: Sequence[Row], out: Path, report: BuildReport) -> None:
    """``<protocol>__<study>.md`` and ``.csv``: the study's variants, mean ± std over seeds."""
    info = describe_protocol(pid, rows)
    p = current_protocol(pid)
    view = view_for(info.task, [r.metrics for r in rows], preferred=p.metrics if p else (),
                    style=p.evaluation.get("style") if p else None)
    frame = study_frame(rows, view)
    name = f"{slug(pid)}__{slug(study)}"
    page = "\n".join([f"# {info.heading}: study `{study}`", "", markdown_table(study_display(frame, view, MARKDOWN)),
                      f"Mean ± sample standard deviation over seeds (seeds per variant in the `seeds` column; "
                      f"which ones in [CSV]({name}.csv)). img/s: mean images per second of the model alone "
                      f"during prediction, from the records. Generated by `ovbench leaderboard` from "
                      f"{len(rows)} result record(s); edit the records, not this file.", ""])
    for fname, text in ((f"{name}.md", page), (f"{name}.csv", frame.to_csv(index=False))):
        atomic_write_text(out / fname, text)
        report.files.append(out / fname)


def build_leaderboards(root: Path, out: Path, protocol: str | None = None, *,
                       data_root: Path | None = None) -> BuildReport:
    """Write the leaderboards of the records under ``root`` into ``out``; see the module docs.

    ``protocol`` builds one protocol's files only (the index is then left as it is).
    ``data_root`` lets protocols whose class table comes from the dataset be checked for
    staleness; without it their rows are reported as unverified.
    """
    root, out = Path(root), Path(out)
    records = _load(root, protocol)
    speeds = _load_speed(root)
    rows = select_rows(records, root, data_root)
    report = BuildReport(out=out, rows=len(rows))
    by_protocol: dict[str, list[Row]] = {}
    for r in rows:
        by_protocol.setdefault(r.protocol_id, []).append(r)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for pid in sorted(by_protocol):
        main, studies = split_studies(by_protocol[pid])
        if main:
            entries.append(_build_protocol(pid, main, speeds, out, report))
        for study, study_rows in sorted(studies.items()):
            _build_study(pid, study, study_rows, out, report)
        report.protocols.append(pid)
    for r in rows:
        if r.stale:
            report.stale.append(f"{r.protocol_id} / {r.label}: {r.status_reason}")
    report.stale_rows = len(report.stale)
    report.unverified_rows = sum(r.status == UNVERIFIED for r in rows)
    if protocol is None:
        report.index = out / "README.md"
        atomic_write_text(report.index, index_page(entries))
        report.files.append(report.index)
    return report
