"""Where the second-order theory holds: measured/estimated ratios binned by the perturbation size.

Theorems 2 and 3 expand 1 − cos(p, q) and KL(p‖q) to second order in Δz/T: their estimates are
Var_r(Δz)/(2T²) and Var_p(Δz)/(2T²). The expansion is of e^{Δz_i/T} token by token (KL(p‖q) =
log E_p[e^{Δz/T}] − E_p[Δz/T] exactly), so it needs every token's shift to be small, not only the shifts
that p weights heavily: a near one-hot p with a large Δz in its tail has a small p-weighted spread, a small
KL and a poor estimate, because the tail's e^{Δz_i/T} outweighs its small p_i. The size binned here is
therefore the spread of Δz/T over the whole vocabulary, ``spread`` = sqrt(Var_uniform(Δz))/T
(shift-invariant, as the softmax is), which the query computes from the stored ``var_uniform``. On the
default model the p-weighted spread sqrt(2 · estimate) does not order the error at all: its smallest bins had
the largest median ratios (tens) and 90th percentiles of 10^12.

Input rows (the query ``reports/theory_regime.sql``): ``model, theorem, probe_set, prompt_id, step,
layer, sublayer, measured, estimate, spread``. Rows whose estimate is at most :data:`MIN_ESTIMATE` carry no
ratio (a zero deviation) and are left out, as are rows without a positive spread.

- :func:`bin_ratios`: per (model, theorem) and log-spaced spread bin, the median ratio with a 95 %
  interval (bootstrap over prompts), its 10th and 90th percentiles, and whether it is inside the band;
- :func:`find_regime`: the regime of each (model, theorem): the longest run of consecutive populated
  bins whose median ratio is within ±``band`` of 1 (ties: the run at the smaller spreads); its upper
  edge is the regime boundary;
- :func:`regime_stats`: inside the regime, the share of rows, Spearman's ρ(measured, estimate) and the
  median ratio with its interval;
- :func:`layer_table`: per (layer, sublayer), the share of rows inside the regime and the median ratio.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from prunescope.report.intervals import DEFAULT, Bootstrap, cluster_quantile_interval

BINS_PER_DECADE = 4
BAND = 0.2  # the estimate counts as right when measured / estimate is within 1 ± BAND
MIN_ROWS = 20  # a bin with fewer rows has no say in the regime
MIN_ESTIMATE = 1e-12
GROUP = ["model", "theorem"]


def with_ratio(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with ``ratio`` = measured / estimate, ``unit`` (the prompt) and ``bin`` (floor of
    log10(spread) · :data:`BINS_PER_DECADE`); rows without a ratio or a positive spread dropped."""
    missing = sorted({"model", "theorem", "probe_set", "prompt_id", "layer", "sublayer", "measured", "estimate",
                      "spread"} - set(rows.columns))
    if missing:
        raise ValueError(f"regime rows lack column(s) {missing}")
    rows = rows[(rows["estimate"] > MIN_ESTIMATE) & (rows["spread"] > 0)].copy()
    rows["ratio"] = rows["measured"] / rows["estimate"]
    rows["unit"] = rows["probe_set"].astype(str) + ":" + rows["prompt_id"].astype(str)
    rows["bin"] = np.floor(np.log10(rows["spread"]) * BINS_PER_DECADE).astype(int)
    return rows


def bin_ratios(rows: pd.DataFrame, boot: Bootstrap = DEFAULT, band: float = BAND) -> pd.DataFrame:
    """One row per (model, theorem, bin): ``spread_lo``/``spread_hi`` (bin edges), ``n_rows``,
    ``n_prompts``, ``median_ratio`` with ``ci_lo``/``ci_hi``, ``q10``/``q90`` and ``in_band``."""
    rows = with_ratio(rows)
    out = []
    for (model, theorem, b), part in rows.groupby([*GROUP, "bin"], sort=True):
        ci = cluster_quantile_interval(part["ratio"].to_numpy(), part["unit"].to_numpy(), 0.5, boot)
        out.append({
            "model": model, "theorem": theorem, "bin": int(b), "spread_lo": 10 ** (b / BINS_PER_DECADE),
            "spread_hi": 10 ** ((b + 1) / BINS_PER_DECADE), "n_rows": len(part), "n_prompts": int(ci["n"]),
            "median_ratio": ci["est"], "ci_lo": ci["lo"], "ci_hi": ci["hi"],
            "q10": float(part["ratio"].quantile(0.1)), "q90": float(part["ratio"].quantile(0.9)),
            "in_band": bool(abs(ci["est"] - 1) <= band),
        })  # fmt: skip
    columns = [*GROUP, "bin", "spread_lo", "spread_hi", "n_rows", "n_prompts", "median_ratio", "ci_lo", "ci_hi",
               "q10", "q90", "in_band"]  # fmt: skip
    return pd.DataFrame(out, columns=columns)


def find_regime(bins: pd.DataFrame, min_rows: int = MIN_ROWS) -> pd.DataFrame:
    """One row per (model, theorem): ``regime_lo`` and ``regime_hi`` (spread edges of the regime, NaN when
    no bin is in the band) and ``n_bins``. Bins with fewer than ``min_rows`` rows are skipped: they neither
    extend nor break a run."""
    out = []
    for (model, theorem), part in bins.groupby(GROUP, sort=True):
        part = part[part["n_rows"] >= min_rows].sort_values("bin")
        best, run = [], []
        for row in part.itertuples(index=False):
            run = [*run, row] if row.in_band else []
            if len(run) > len(best):  # strictly longer: ties keep the run at smaller spreads
                best = run
        out.append({"model": model, "theorem": theorem, "n_bins": len(best),
                    "regime_lo": best[0].spread_lo if best else math.nan,
                    "regime_hi": best[-1].spread_hi if best else math.nan})
    return pd.DataFrame(out, columns=[*GROUP, "n_bins", "regime_lo", "regime_hi"])


def _inside(rows: pd.DataFrame, regimes: pd.DataFrame) -> pd.Series:
    edges = rows[GROUP].merge(regimes, on=GROUP, how="left")
    return pd.Series(((rows["spread"].to_numpy() >= edges["regime_lo"].to_numpy())
                      & (rows["spread"].to_numpy() < edges["regime_hi"].to_numpy())), index=rows.index)


def regime_stats(rows: pd.DataFrame, regimes: pd.DataFrame, boot: Bootstrap = DEFAULT) -> pd.DataFrame:
    """One row per (model, theorem): the regime edges, ``n_rows`` (with a ratio), ``n_inside``,
    ``frac_inside``, ``spearman`` (ρ of measured and estimate inside, average ranks for ties), and the
    median ratio inside with its interval (bootstrap over prompts) and ``n_prompts``."""
    rows = with_ratio(rows)
    inside = _inside(rows, regimes)
    out = []
    for (model, theorem), part in rows.groupby(GROUP, sort=True):
        regime = regimes[(regimes["model"] == model) & (regimes["theorem"] == theorem)].iloc[0]
        kept = part[inside[part.index]]
        ci = cluster_quantile_interval(kept["ratio"].to_numpy(), kept["unit"].to_numpy(), 0.5, boot)
        rho = math.nan
        if len(kept) > 2:
            rho = float(np.corrcoef(kept["measured"].rank(), kept["estimate"].rank())[0, 1])
        out.append({"model": model, "theorem": theorem, "regime_lo": regime["regime_lo"],
                    "regime_hi": regime["regime_hi"], "n_rows": len(part), "n_inside": len(kept),
                    "frac_inside": len(kept) / len(part) if len(part) else math.nan, "spearman": rho,
                    "median_ratio": ci["est"], "ci_lo": ci["lo"], "ci_hi": ci["hi"], "n_prompts": int(ci["n"])})
    return pd.DataFrame(out)


def layer_table(rows: pd.DataFrame, regimes: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, theorem, layer, sublayer): ``n_rows``, ``frac_inside`` (rows whose spread is
    inside the regime) and ``median_ratio`` over all its rows."""
    rows = with_ratio(rows)
    rows = rows.assign(inside=_inside(rows, regimes))
    table = rows.groupby([*GROUP, "layer", "sublayer"], sort=True).agg(
        n_rows=("ratio", "size"), frac_inside=("inside", "mean"), median_ratio=("ratio", "median"))
    return table.reset_index()


def figure_frame(rows: pd.DataFrame, boot: Bootstrap = DEFAULT) -> pd.DataFrame:
    """The regime figure's data: :func:`bin_ratios` with each (model, theorem)'s regime edges."""
    bins = bin_ratios(rows, boot)
    if bins.empty:
        return bins
    return bins.merge(find_regime(bins), on=GROUP, how="left")
