"""The report's findings: where the theory holds on this run's model, and whether a cheap probe predicts task
damage — computed from the same queries as their figures (``reports/theory_regime.sql``,
``reports/task_predictor.sql``) and stated as sentences for the page."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import duckdb
import pandas as pd

from prunescope.report import regime
from prunescope.report.intervals import DEFAULT, Bootstrap
from prunescope.report.sources import run_query

def regime_findings(
    con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any], boot: Bootstrap = DEFAULT
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(:func:`regime.regime_stats`, :func:`regime.layer_table`) of the regime rows of ``sql``."""
    rows = run_query(con, sql, params)
    if rows.empty:
        return pd.DataFrame(), pd.DataFrame()
    regimes = regime.find_regime(regime.bin_ratios(rows, boot))
    return regime.regime_stats(rows, regimes, boot), regime.layer_table(rows, regimes)


def predictor_findings(con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any]) -> pd.DataFrame:
    """One row per (model, panel) of the predictor query: the probe, the task kind, ρ and the variant count."""
    frame = run_query(con, sql, params)
    columns = ["model", "panel_order", "probe_title", "task_kind", "rho", "n_variants"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    return frame[columns].drop_duplicates(["model", "panel_order"]).reset_index(drop=True)


def regime_line(row: Mapping[str, Any], band: float = regime.BAND) -> str:
    """One sentence on one (model, theorem) regime, from a :func:`regime.regime_stats` row."""
    head = f"{row['theorem']} on {row['model']}"
    if not math.isfinite(row["regime_hi"]):
        return (f"{head}: no spread bin with at least {regime.MIN_ROWS} rows has a median measured/estimated ratio "
                f"within ±{band * 100:.0f} %; the second-order estimate does not hold on this run.")
    return (
        f"{head}: the estimate is within ±{band * 100:.0f} % of the measurement (median ratio per bin) for a "
        f"spread of Δz/T over the vocabulary from {row['regime_lo']:.3g} up to {row['regime_hi']:.3g} (the regime boundary); inside it, "
        f"{row['n_inside']} of {row['n_rows']} rows ({row['frac_inside']:.0%}, {row['n_prompts']} prompts): "
        f"Spearman ρ = {row['spearman']:.2f}, median ratio {row['median_ratio']:.2f} "
        f"[95 % CI {row['ci_lo']:.2f}, {row['ci_hi']:.2f}]."
    )


def predictor_line(row: Mapping[str, Any]) -> str:
    """One sentence on one predictor panel."""
    kind = str(row["task_kind"]).replace("_", " ")
    rho = "undefined (no spread in one of the two)" if not math.isfinite(row["rho"]) else f"{row['rho']:.2f}"
    return (f"On {row['model']}, {row['probe_title'].split(',')[0]} against the relative {kind} task drop: "
            f"Spearman ρ = {rho} over {row['n_variants']} variants.")


def finding_lines(stats: pd.DataFrame, predictor: pd.DataFrame) -> list[str]:
    """The sentences of the page's findings list: regimes first, then predictors."""
    lines = [regime_line(row) for row in stats.to_dict("records")]
    return lines + [predictor_line(row) for row in predictor.to_dict("records")]
