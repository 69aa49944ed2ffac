"""One figure from its query to its files: SQL over the report views (-> its derive step) -> CSV of the data
drawn -> Altair chart -> PNG and SVG (rendered offline by vl-convert). Figures and their builders are
registered in :mod:`prunescope.report.catalog`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

from prunescope.io import atomic_path
from prunescope.report.catalog import BY_NAME
from prunescope.report.sources import connect, run_query

PNG_SCALE = 2  # PNG pixels per chart pixel: sharp on high-density screens and in print


def query_figure(
    name: str,
    sql: str,
    sources: Mapping[str, Sequence[str | os.PathLike]],
    params: Mapping[str, Any] | None = None,
    paper_files: Mapping[str, str | os.PathLike] | None = None,
) -> pd.DataFrame:
    """The data of figure ``name``: its SQL text run over the views of ``sources``, then the figure's derive
    step when it has one (e.g. the regime figure's binning).

    Raises ``ValueError`` naming the figure and its input files when the query finds none of this run's
    data (a figure of only the paper's numbers, or an empty one, would hide a broken upstream stage).
    """
    if name not in BY_NAME:
        raise ValueError(f"unknown figure {name!r}; known: {sorted(BY_NAME)}")
    con = connect(sources, paper_files)
    try:
        frame = run_query(con, sql, params)
    finally:
        con.close()
    ours = frame[frame["source"] != "paper"] if "source" in frame.columns else frame
    if ours.empty:
        listing = {view: [str(p) for p in paths] for view, paths in sources.items()}
        raise ValueError(f"figure {name}: the query returned none of this run's data; inputs: {listing}")
    derive = BY_NAME[name].derive_step()
    return derive(frame) if derive else frame


def chart_figure(name: str, frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """The finished chart of figure ``name`` from its (derived) query result; ``variants`` fixes the colours."""
    return BY_NAME[name].chart_builder()(frame, variants)


def build_figure(
    name: str,
    sql_path: str | os.PathLike,
    sources: Mapping[str, Sequence[str | os.PathLike]],
    outputs: Mapping[str, str | os.PathLike],
    variants: Sequence[str],
    params: Mapping[str, Any] | None = None,
    paper_files: Mapping[str, str | os.PathLike] | None = None,
) -> pd.DataFrame:
    """Query, chart and write figure ``name``: ``outputs`` maps ``csv``, ``png`` and ``svg`` to paths.

    Every file is written atomically; the queried frame is returned.
    """
    missing = sorted({"csv", "png", "svg"} - set(outputs))
    if missing:
        raise ValueError(f"figure {name}: outputs lack {missing}; expected csv, png and svg paths")
    frame = query_figure(name, Path(sql_path).read_text(), sources, params, paper_files)
    with atomic_path(outputs["csv"]) as tmp:
        frame.to_csv(tmp, index=False)
    chart = chart_figure(name, frame, variants)
    save_chart(chart, outputs["png"])
    save_chart(chart, outputs["svg"])
    return frame


def save_chart(chart: alt.TopLevelMixin, path: str | os.PathLike) -> None:
    """Render ``chart`` offline (vl-convert) to the format of ``path``'s suffix, atomically."""
    suffix = Path(path).suffix.lstrip(".")
    if suffix not in ("png", "svg"):
        raise ValueError(f"{path}: charts are saved as .png or .svg, not .{suffix}")
    options = {"scale_factor": PNG_SCALE} if suffix == "png" else {}
    with alt.data_transformers.disable_max_rows(), atomic_path(path) as tmp:
        chart.save(str(tmp), format=suffix, **options)
