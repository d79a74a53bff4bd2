"""Leaderboard rows as pandas DataFrames: full precision for CSV, formatted text for display.

:func:`full_frame` has one row per leaderboard row, sorted by the task's primary metric
(descending, missing last), then method and source; numbers at full precision, NaN for missing.
:func:`display_frame` turns it into the strings a table shows (one decimal, "–" for missing,
intervals as "lo–hi", a stale mark); :func:`overview_frame` is the cross-protocol pivot.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Mapping, Sequence

import pandas as pd

from ovbench.leaderboard.columns import TaskView, as_interval, as_number, metric_at, scalar_paths
from ovbench.leaderboard.select import CURRENT, STALE, UNVERIFIED, Row, device_class

ID_COLUMNS = ("method", "source")
TRAILING_COLUMNS = ("stale", "citation")
#: Prefixes of the speed columns :func:`add_speed` adds (``latency_ms.<device class>``: median
#: latency of the speed record's headline setting; ``images_per_s.<device class>``: 1000 / it).
LATENCY_PREFIX = "latency_ms."
SPEED_PREFIX = "images_per_s."


@dataclass(frozen=True)
class Style:
    """How a rendered table writes missing values, intervals and row status."""

    missing: str = "–"
    range_sep: str = "–"
    decimals: int = 1
    marks: Mapping[str, str] = field(default_factory=lambda: {
        CURRENT: "no", STALE: "⚠ yes", UNVERIFIED: "? unverified"})

    def number(self, value: Any) -> str:
        """``value`` to ``decimals`` places, halves rounded up as in papers (9.25 -> "9.3")."""
        v = as_number(value)
        if v is None:
            return self.missing
        q = Decimal(repr(v)).quantize(Decimal(1).scaleb(-self.decimals), rounding=ROUND_HALF_UP)
        return f"{q:f}" if q != 0 else f"{abs(q):f}"


MARKDOWN = Style()
LATEX = Style(missing="--", range_sep="--", marks={CURRENT: "no", STALE: "yes", UNVERIFIED: "unverified"})


def sort_rows(rows: Sequence[Row], view: TaskView) -> list[Row]:
    """Rows by primary metric descending (missing last), then method and source."""
    def key(r: Row):
        v = as_number(metric_at(r.metrics, view.primary)) if view.primary else None
        return (v is None, -(v or 0.0), r.method, r.source, r.path)
    return sorted(rows, key=key)


def extra_metric_paths(rows: Sequence[Row], view: TaskView) -> list[tuple[str, ...]]:
    """Scalar metrics the records carry beyond the view's columns (kept in the CSV)."""
    shown = {c.path for c in view.columns}
    return sorted({p for r in rows for p in scalar_paths(r.metrics)} - shown)


def full_frame(rows: Sequence[Row], view: TaskView) -> pd.DataFrame:
    """Every row at full precision, with provenance columns (the CSV's content)."""
    extras = extra_metric_paths(rows, view)
    metric_keys = [k for c in view.columns for k in c.csv_keys()] + [".".join(p) for p in extras]
    data = []
    for r in sort_rows(rows, view):
        d: dict[str, Any] = {"protocol": r.protocol_id, "method": r.method, "source": r.source}
        for c in view.columns:
            raw = metric_at(r.metrics, c.path)
            if c.kind == "interval":
                lo_hi = as_interval(raw)
                d[f"{c.key}.lo"], d[f"{c.key}.hi"] = lo_hi if lo_hi else (None, None)
            else:
                d[c.key] = as_number(raw)
        for p in extras:
            d[".".join(p)] = as_number(metric_at(r.metrics, p))
        ref = r.record["protocol"]
        d.update({"stale": r.stale, "status": r.status, "status_reason": r.status_reason,
                  "citation": r.citation_text, "citation_url": str(r.citation.get("url") or ""),
                  "protocol_version": ref.get("version"), "protocol_hash": ref.get("hash"),
                  "timestamp": r.timestamp, "git_commit": r.git_commit or "",
                  "git_dirty": (r.record.get("ovbench") or {}).get("git_dirty"),
                  "num_images": (r.record.get("inputs") or {}).get("num_images"),
                  "record": r.path})
        data.append(d)
    columns = ["protocol", *ID_COLUMNS, *metric_keys, "stale", "status", "status_reason", "citation",
               "citation_url", "protocol_version", "protocol_hash", "timestamp", "git_commit",
               "git_dirty", "num_images", "record"]
    df = pd.DataFrame(data, columns=columns)
    if metric_keys:
        df[metric_keys] = df[metric_keys].astype("float64")
    return df


def add_speed(full: pd.DataFrame, speeds: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``full`` with columns ``latency_ms.<device class>`` (the speed record's median latency, ms) and
    ``images_per_s.<device class>`` (1000 / it) for each device class whose speed records match a
    reproduced row's method; reported rows get NaN (their speed was not measured by ovbench)."""
    out = full.copy()
    for dev in sorted({device_class(s) for s in speeds}):
        by_method = {str(s["method"]): float(s["latency_ms"]["median"]) for s in speeds if device_class(s) == dev}
        col = [by_method.get(m) if src == "reproduced" else None for m, src in zip(out["method"], out["source"])]
        if any(v is not None for v in col):
            latency = pd.Series(col, index=out.index, dtype="float64")
            out[LATENCY_PREFIX + dev] = latency
            out[SPEED_PREFIX + dev] = 1000.0 / latency
    return out


def display_frame(full: pd.DataFrame, view: TaskView, style: Style = MARKDOWN) -> pd.DataFrame:
    """The table a reader sees: method, source, the view's metrics as text, stale, citation.

    Optional columns (e.g. the confidence interval) appear only when some row has a value; speed
    columns (:func:`add_speed`) follow the metrics as ``ms (<device class>)`` and ``img/s (<device class>)``.
    """
    out: dict[str, list[str]] = {c: full[c].astype(str).tolist() for c in ID_COLUMNS}
    for c in view.columns:
        if c.kind == "interval":
            lo, hi = full[f"{c.key}.lo"], full[f"{c.key}.hi"]
            if c.optional and lo.isna().all():
                continue
            out[c.label] = [style.missing if pd.isna(a) or pd.isna(b) else
                            f"{style.number(a)}{style.range_sep}{style.number(b)}" for a, b in zip(lo, hi)]
        else:
            col = full[c.key]
            if c.optional and col.isna().all():
                continue
            out[c.label] = [style.number(v) for v in col]
    for key in (k for k in full.columns if k.startswith(LATENCY_PREFIX)):
        dev = key[len(LATENCY_PREFIX):]
        out[f"ms ({dev})"] = [style.number(v) for v in full[key]]
        out[f"img/s ({dev})"] = [style.number(v) for v in full[SPEED_PREFIX + dev]]
    out["stale"] = [style.marks.get(s, s) for s in full["status"]]
    out["citation"] = [c if isinstance(c, str) and c else style.missing for c in full["citation"]]
    return pd.DataFrame(out, columns=list(out))


def overview_frame(rows: Sequence[Row], primary: Sequence[str], style: Style = MARKDOWN,
                   protocols: Sequence[str] | None = None) -> pd.DataFrame:
    """Cross-protocol pivot: index "method [source]", one column per protocol, primary metric.

    Stale values carry the first word of the style's stale mark (" ⚠" in Markdown); cells
    without a record show ``style.missing``.
    """
    cols = sorted(protocols if protocols is not None else {r.protocol_id for r in rows})
    if not rows or not cols:
        return pd.DataFrame(columns=["method [source]", *cols])
    long = pd.DataFrame([{"row": r.label, "protocol": r.protocol_id,
                          "value": as_number(metric_at(r.metrics, primary)), "stale": r.stale}
                         for r in rows])
    values = long.pivot(index="row", columns="protocol", values="value")
    stale = long.pivot(index="row", columns="protocol", values="stale")
    values = values.reindex(index=sorted(values.index), columns=cols)
    stale = stale.reindex(index=values.index, columns=cols)
    marker = style.marks[STALE].split()[0]
    text = pd.DataFrame(index=values.index, columns=cols, dtype=object)
    for p in cols:
        text[p] = [style.number(v) + (f" {marker}" if not pd.isna(s) and bool(s) else "")
                   for v, s in zip(values[p], stale[p])]
    text.index.name = "method [source]"
    return text.reset_index()
