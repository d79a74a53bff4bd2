"""Multi-seed studies (ablations): records that belong to a study are averaged over seeds.

A reproduced record joins a study when its ``config`` has ``study: {"name": str, "variant": str,
"seed": int}`` (and optionally ``"order": int``, the variant's row position). Study records stay
out of the protocol's main table; each ``(protocol, study)`` gets its own table with one row per
variant: the number of seeds and, for every non-optional metric column of the task's view, the mean
± sample standard deviation over seeds, plus the mean images per second (``config.images_per_s``)
and the mean training time in seconds (``config.train_seconds``) when the records carry them.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Sequence

import pandas as pd

from ovbench.leaderboard.columns import TaskView, as_number, metric_at
from ovbench.leaderboard.frames import Style
from ovbench.leaderboard.select import Row

SPEED_KEY = "images_per_s"
TRAIN_TIME_KEY = "train_seconds"


def study_of(row: Row) -> Mapping[str, Any] | None:
    """The row's study declaration, or None."""
    study = (row.record.get("config") or {}).get("study")
    return study if isinstance(study, Mapping) and "name" in study and "variant" in study else None


def split_studies(rows: Sequence[Row]) -> tuple[list[Row], dict[str, list[Row]]]:
    """(rows of the main table, study name -> its rows)."""
    main: list[Row] = []
    studies: dict[str, list[Row]] = {}
    for r in rows:
        study = study_of(r)
        if study is None:
            main.append(r)
        else:
            studies.setdefault(str(study["name"]), []).append(r)
    return main, studies


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _config_numbers(rows: Sequence[Row], key: str) -> list[float]:
    """The numeric ``config[key]`` of each row that has one."""
    return [v for v in (as_number((r.record.get("config") or {}).get(key)) for r in rows) if v is not None]


def study_frame(rows: Sequence[Row], view: TaskView) -> pd.DataFrame:
    """One row per variant (by ``order``, then name): ``variant``, ``seeds``, then ``<metric>.mean``
    and ``<metric>.std`` for each value column of ``view``, and ``images_per_s.mean`` /
    ``train_seconds.mean`` / ``train_seconds.std`` when present."""
    columns = [c for c in view.columns if c.kind == "value" and not c.optional]
    variants: dict[str, list[Row]] = {}
    order: dict[str, int] = {}
    for r in rows:
        study = study_of(r)
        name = str(study["variant"])
        variants.setdefault(name, []).append(r)
        order[name] = min(order.get(name, math.inf), int(study.get("order", math.inf)) if "order" in study else math.inf)
    data = []
    for name in sorted(variants, key=lambda v: (order[v], v)):
        group = variants[name]
        d: dict[str, Any] = {"variant": name, "seeds": len(group),
                             "seed_list": " ".join(str(study_of(r).get("seed", "?")) for r in
                                                   sorted(group, key=lambda r: str(study_of(r).get("seed"))))}
        for c in columns:
            values = [v for v in (as_number(metric_at(r.metrics, c.path)) for r in group) if v is not None]
            d[f"{c.key}.mean"], d[f"{c.key}.std"] = _mean_std(values) if values else (None, None)
        speeds = _config_numbers(group, SPEED_KEY)
        if speeds:
            d[f"{SPEED_KEY}.mean"] = statistics.fmean(speeds)
        train_times = _config_numbers(group, TRAIN_TIME_KEY)
        if train_times:
            d[f"{TRAIN_TIME_KEY}.mean"], d[f"{TRAIN_TIME_KEY}.std"] = _mean_std(train_times)
        data.append(d)
    return pd.DataFrame(data)


def study_display(frame: pd.DataFrame, view: TaskView, style: Style) -> pd.DataFrame:
    """The table a reader sees: ``mean ± std`` cells, one decimal."""
    out: dict[str, list[str]] = {"variant": frame["variant"].tolist(), "seeds": frame["seeds"].astype(str).tolist()}
    for c in view.columns:
        if f"{c.key}.mean" in frame:
            out[c.label] = [style.missing if pd.isna(m) else f"{style.number(m)} ± {style.number(s)}"
                            for m, s in zip(frame[f"{c.key}.mean"], frame[f"{c.key}.std"])]
    if f"{SPEED_KEY}.mean" in frame:
        out["img/s"] = [style.missing if pd.isna(v) else style.number(v) for v in frame[f"{SPEED_KEY}.mean"]]
    if f"{TRAIN_TIME_KEY}.mean" in frame:
        out["train s"] = [style.missing if pd.isna(m) else f"{m:.0f} ± {s:.0f}"
                          for m, s in zip(frame[f"{TRAIN_TIME_KEY}.mean"], frame[f"{TRAIN_TIME_KEY}.std"])]
    return pd.DataFrame(out)
