"""The summary table: per variant, the relative change of its task scores and its mean KL to the dense model.

Its query is ``reports/summary.sql``; the table goes to Parquet (with its definitions as metadata), CSV and
a small standalone HTML page, and :func:`summary_html` renders it for the report page.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from prunescope.io import atomic_path, write_parquet
from prunescope.report.sources import connect, run_query

COLUMNS = {  # column -> (heading, kind of number)
    "model": ("model", "text"),
    "label": ("variant", "text"),
    "multiple_choice_rel_change": ("multiple choice", "relative"),
    "retrieval_rel_change": ("retrieval", "relative"),
    "generative_rel_change": ("generative", "relative"),
    "n_tasks": ("tasks", "count"),
    "kl_free_mean": ("KL, free-running", "nats"),
    "kl_forced_mean": ("KL, teacher-forced", "nats"),
}
DEFINITIONS = {
    "rel_change": "mean over the tasks of a kind of (variant score / dense score - 1), each task's primary "
    "metric (prunescope.report.sources.PRIMARY_METRICS); tasks with a dense score of 0 are left out",
    "kl": "mean of KL(p_dense || p_variant) in nats over every step and prompt of the generation probe, "
    "probability space at the report temperature",
}


def build_summary(
    sql_path: str | os.PathLike,
    sources: Mapping[str, Sequence[str | os.PathLike]],
    outputs: Mapping[str, str | os.PathLike],
    params: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Run the summary query and write ``outputs['parquet']``, ``['csv']`` and ``['html']``."""
    missing = sorted({"parquet", "csv", "html"} - set(outputs))
    if missing:
        raise ValueError(f"summary outputs lack {missing}; expected parquet, csv and html paths")
    con = connect(sources)
    try:
        frame = run_query(con, Path(sql_path).read_text(), params)
    finally:
        con.close()
    settings = {"definitions": DEFINITIONS, "query": str(sql_path), **dict(params or {})}
    write_parquet(pa.Table.from_pandas(frame, preserve_index=False), outputs["parquet"], settings)
    with atomic_path(outputs["csv"]) as tmp:
        frame.to_csv(tmp, index=False)
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>prunescope summary</title></head><body>\n"
        f"{summary_html(frame)}\n</body></html>\n"
    )
    with atomic_path(outputs["html"]) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return frame


def summary_html(frame: pd.DataFrame) -> str:
    """The summary as an HTML table: relative changes as signed percentages, KL in nats, '—' for none."""
    columns = [c for c in COLUMNS if c in frame.columns and (c != "model" or frame["model"].nunique() > 1)]
    head = "".join(f"<th>{html.escape(COLUMNS[c][0])}</th>" for c in columns)
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(_cell(getattr(row, c), COLUMNS[c][1]) for c in columns)
        body.append(f"<tr>{cells}</tr>")
    return (
        "<table class='summary'>\n<thead><tr>" + head + "</tr></thead>\n<tbody>\n" + "\n".join(body)
        + "\n</tbody>\n</table>"
    )


def format_value(value, kind: str) -> str:
    """One cell's text: relative changes as '+1.2%' / '−35.0%', KL with 3 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "—"
    if kind == "relative":
        return f"{value * 100:+.1f}%".replace("-", "−")
    if kind == "nats":
        return f"{value:.3g}"
    if kind == "count":
        return str(int(value))
    return str(value)


def _cell(value, kind: str) -> str:
    align = " class='num'" if kind != "text" else ""
    return f"<td{align}>{html.escape(format_value(value, kind))}</td>"
