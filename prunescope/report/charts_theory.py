"""Charts beyond the paper's figure set: where the second-order theory holds (regime), the compression
comparison in the style of the paper's Fig 12, and whether a cheap probe predicts task damage. Each builder
takes the frame of its query (after the figure's derive step) and the configured variant names, and returns a
finished Altair chart."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from prunescope.report.charts_outputs import step_bands
from prunescope.report.regime import BAND
from prunescope.report.style import (
    PANEL_HEIGHT, PANEL_WIDTH, count_text, finish, ordered, scale, variant_colors, with_panel,
)  # fmt: skip

RATIO_FLOOR = 1e-3  # ratios are drawn on a log axis; smaller ones (a measured value of ~0) sit at the floor


def regime(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Median measured/estimated ratio per spread bin with its 95 % CI and 10th–90th percentiles, the ±20 %
    band and the regime found, one panel per (model, theorem)."""
    frame = frame.assign(
        spread=(frame["spread_lo"] * frame["spread_hi"]) ** 0.5,
        **{c: frame[c].clip(lower=RATIO_FLOOR) for c in ("median_ratio", "ci_lo", "ci_hi", "q10", "q90")},
    )
    frame = with_panel(frame, "theorem", "column")
    x_title, x_scale, y_scale = "spread of Δz/T over the vocabulary: sqrt(Var_uniform Δz) / T", alt.Scale(type="log"), alt.Scale(type="log")
    x = alt.X("spread:Q", title=x_title, scale=x_scale)
    panels = []
    for column in ordered(frame, "column"):
        part = frame[frame["column"] == column]
        lo, hi = part["spread_lo"].min(), part["spread_hi"].max()
        band = alt.Chart(pd.DataFrame({"x": [lo], "x2": [hi], "y": [1 - BAND], "y2": [1 + BAND]})).mark_rect(
            color="#1f77b4", opacity=0.2).encode(
            x=alt.X("x:Q", title=x_title, scale=x_scale), x2="x2:Q", y=alt.Y("y:Q", title="measured / estimate",
                                                                                 scale=y_scale), y2="y2:Q")
        layers = [band]
        edges = part[["regime_lo", "regime_hi"]].dropna().drop_duplicates()
        if not edges.empty:
            layers.append(alt.Chart(edges).mark_rect(color="#2ca02c", opacity=0.1).encode(
                x=alt.X("regime_lo:Q", title=x_title, scale=x_scale), x2="regime_hi:Q"))
            layers.append(alt.Chart(edges).mark_rule(color="#2ca02c", strokeDash=[4, 3]).encode(
                x=alt.X("regime_hi:Q", title=x_title, scale=x_scale)))
        layers += [
            alt.Chart(part).mark_area(opacity=0.12, color="#7f7f7f").encode(
                x=x, y=alt.Y("q10:Q", title="measured / estimate", scale=y_scale), y2="q90:Q"),
            alt.Chart(part).mark_rule(color="#d62728").encode(
                x=x, y=alt.Y("ci_lo:Q", title="measured / estimate", scale=y_scale), y2="ci_hi:Q"),
            alt.Chart(part).mark_line(point=alt.OverlayMarkDef(color="#d62728"), color="#d62728").encode(
                x=x,
                y=alt.Y("median_ratio:Q", title="measured / estimate", scale=y_scale),
                tooltip=[alt.Tooltip("spread_lo:Q", format=".3g"), alt.Tooltip("spread_hi:Q", format=".3g"),
                         alt.Tooltip("median_ratio:Q", format=".3f"), alt.Tooltip("ci_lo:Q", format=".3f"),
                         alt.Tooltip("ci_hi:Q", format=".3f"), alt.Tooltip("q10:Q", format=".3g"),
                         alt.Tooltip("q90:Q", format=".3g"), "n_rows", "n_prompts"],
            ),
        ]
        boundary = "no regime" if edges.empty else f"regime up to {edges['regime_hi'].iloc[0]:.3g}"
        panels.append(alt.layer(*layers).properties(width=PANEL_WIDTH + 60, height=PANEL_HEIGHT + 20,
                                                     title=f"{column}: {boundary}"))
    t = f"Where the theory holds · measured / estimated vs the perturbation size ({count_text(frame)})"
    sub = [f"each sublayer dropped alone, all layers and steps, log bins; red: median ratio per bin with its 95 % CI "
           f"(bootstrap over prompts); grey: 10th–90th percentile",
           f"blue band: within ±{BAND * 100:.0f} %; shaded green span: the regime (the longest run of bins inside the band)"]
    return finish(alt.hconcat(*panels), t, sub)


def compression(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Fig 12: per-step cos h, cos z, cos p, RMS Δz, uniform Var Δz and KL of free-running generation, one
    panel per quantity (and model), one colour per variant, 95 % bands over prompts."""
    frame = with_panel(frame, "panel", "panel_title")
    colors = variant_colors(variants)
    panels = [step_bands(frame[frame["panel_title"] == title], title, colors, frame["label"], PANEL_WIDTH + 20)
              .properties(title=title) for title in ordered(frame, "panel_title")]
    rows = [alt.hconcat(*panels[i:i + 3]) for i in range(0, len(panels), 3)]
    t = f"Fig 12 · Compression comparison: quantised vs pruned vs dropped, free-running ({count_text(frame)})"
    sub = ("mean over the prompts that reached the step, band: 95 % CI (bootstrap over prompts); RMS Δz and the "
           "uniform variance of Δz in logit units")
    return finish(alt.vconcat(*rows).resolve_scale(color="shared"), t, sub)


def predictor(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Probe value vs relative task drop per variant, with both 95 % intervals, Spearman ρ and N in each title."""
    frame = frame.assign(drop_pct=100 * frame["drop"], drop_lo_pct=100 * frame["drop_lo"],
                         drop_hi_pct=100 * frame["drop_hi"])
    frame = with_panel(frame, "panel", "column")
    colors = variant_colors(variants)
    color = alt.Color("label:N", title="variant", scale=scale(colors, present=frame["label"]), sort=list(colors))
    panels = []
    for column in ordered(frame, "column"):
        part = frame[frame["column"] == column]
        x = alt.X("probe_value:Q", title=part["probe_title"].iloc[0], scale=alt.Scale(zero=False))
        y = alt.Y("drop_pct:Q", title=f"relative {part['task_kind'].iloc[0].replace('_', ' ')} drop (%)")
        base = alt.Chart(part)
        panels.append(alt.layer(
            base.mark_rule(opacity=0.6).encode(x="probe_lo:Q", x2="probe_hi:Q", y=y, color=color),
            base.mark_rule(opacity=0.6).encode(x=x, y="drop_lo_pct:Q", y2="drop_hi_pct:Q", color=color),
            base.mark_point(filled=True, size=60).encode(
                x=x, y=y, color=color,
                tooltip=["label", alt.Tooltip("probe_value:Q", format=".3g"), alt.Tooltip("probe_lo:Q", format=".3g"),
                         alt.Tooltip("probe_hi:Q", format=".3g"), alt.Tooltip("drop_pct:Q", format=".1f"),
                         alt.Tooltip("drop_lo_pct:Q", format=".1f"), alt.Tooltip("drop_hi_pct:Q", format=".1f"),
                         "probe_n", "n_tasks", "n_items"]),
            base.mark_text(align="left", dx=6, dy=-6, fontSize=10).encode(x=x, y=y, text="label:N"),
        ).properties(width=PANEL_WIDTH + 80, height=PANEL_HEIGHT + 60, title=column))
    n = int(frame["n_variants"].max()) if len(frame) else 0
    t = f"Predictor · Does a cheap probe predict task damage? (Spearman ρ over N = {n} variants)"
    sub = ["one point per variant; whiskers: 95 % CIs (probe: bootstrap over prompts or items; drop: paired bootstrap "
           "over task items)", "drop = (dense − variant) / dense, averaged over the tasks of the kind"]
    return finish(alt.hconcat(*panels), t, sub)
