"""Charts of the layer-wise probe: the representation hierarchy (Figs 4, 13) and theory vs measurement
(Figs 5, 6, 11, 14–17). Each builder takes the frame of its query (``reports/<figure>.sql``) and the
configured variant names, and returns a finished Altair chart."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from prunescope.report.style import (
    PANEL_HEIGHT, PANEL_WIDTH, SERIES_COLORS, STEP_AXIS, SPACE_COLORS, SPACES, count_text, finish, ordered, scale,
    with_panel,
)  # fmt: skip

Y_TITLE = "cosine similarity to dense"
SUBLAYER_TITLES = {"attn": "attention sublayer", "mlp": "MLP sublayer"}
SOURCE_DASHES = {"this run": [1, 0], "paper (Qwen2.5-7B)": [5, 3]}
SOURCE_OPACITY = {"this run": 1.0, "paper (Qwen2.5-7B)": 0.45}


def hierarchy_drop(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Fig 4: mean cosine per layer with a min–max band, one column per sublayer, the paper dashed."""
    frame = frame.assign(sublayer_title=frame["sublayer"].map(SUBLAYER_TITLES))
    frame = with_panel(frame, "sublayer_title", "column")
    t = f"Fig 4 · Each sublayer dropped alone: similarity to the dense model per layer ({count_text(frame)})"
    sub = ("mean over prompts × steps; dark band: 95 % CI (bootstrap over prompts), light band: min–max; "
           "dashed: the paper's Qwen2.5-7B means, rescaled to this depth")
    return finish(_hierarchy(frame, "column", None), t, sub)


def hierarchy_pruned(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Fig 13: as Fig 4 with each sublayer replaced by its pruned version; one row per variant."""
    frame = frame.assign(source="this run", sublayer_title=frame["sublayer"].map(SUBLAYER_TITLES))
    frame = with_panel(frame, "label", "row")
    t = f"Fig 13 · Each sublayer replaced alone by its pruned or quantised version ({count_text(frame)})"
    sub = ("mean over prompts × steps; dark band: 95 % CI (bootstrap over prompts), light band: min–max; "
           "one row per intra-layer or quantised variant")
    return finish(_hierarchy(frame, "sublayer_title", "row"), t, sub)


def _hierarchy(frame: pd.DataFrame, column: str, row: str | None) -> alt.FacetChart:
    frame = frame.assign(layer=frame["layer"].astype(float))
    x = alt.X("layer:Q", title="layer index", scale=alt.Scale(nice=False), axis=STEP_AXIS)
    color = alt.Color("space:N", title="space", scale=scale(SPACE_COLORS, SPACES), sort=list(SPACES),
                      legend=alt.Legend(symbolType="stroke", symbolOpacity=1, symbolStrokeWidth=3))
    spread = (
        alt.Chart()
        .mark_area(opacity=0.07)
        .encode(x=x, y=alt.Y("min_value:Q", title=Y_TITLE), y2="max_value:Q", color=color)
        .transform_filter("datum.source == 'this run'")
    )
    band = (
        alt.Chart()
        .mark_area(opacity=0.3)
        .encode(x=x, y=alt.Y("ci_lo:Q", title=Y_TITLE), y2="ci_hi:Q", color=color)
        .transform_filter("datum.source == 'this run'")
    )
    sources = [s for s in SOURCE_DASHES if s in set(frame["source"])]
    line = alt.Chart().mark_line(strokeWidth=1.8).encode(
        x=x,
        y=alt.Y("mean:Q", title=Y_TITLE, scale=alt.Scale(zero=False)),
        color=color,
        # Same field for both: they merge into one "source" legend (legend=None on one alone would hide both);
        # with our data only there is nothing to tell apart.
        strokeDash=alt.StrokeDash("source:N", title="source", scale=scale([SOURCE_DASHES[s] for s in sources], sources),
                                  legend=alt.Legend() if len(sources) > 1 else None),
        opacity=alt.Opacity("source:N", title="source", scale=scale([SOURCE_OPACITY[s] for s in sources], sources),
                            legend=alt.Legend() if len(sources) > 1 else None),
        detail="source:N",
        tooltip=["space", "source", "layer", alt.Tooltip("mean:Q", format=".4f"), alt.Tooltip("ci_lo:Q", format=".4f"),
                 alt.Tooltip("ci_hi:Q", format=".4f"), alt.Tooltip("min_value:Q", format=".4f"), "n_prompts"],
    )
    layered = alt.layer(spread, band, line, data=frame).properties(width=PANEL_WIDTH + 70, height=PANEL_HEIGHT)
    facets = {"column": alt.Column(f"{column}:N", title=None, sort=ordered(frame, column))}
    if row is not None:
        facets["row"] = alt.Row(f"{row}:N", title=None, sort=ordered(frame, row), header=alt.Header(labelAngle=0, labelAlign="left"))
    return layered.facet(**facets)


def theory_steps(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Figs 5, 6, 16, 17: per step at one layer, measured deviation vs its estimate; one row per quantity."""
    frame = frame.assign(sublayer_title=frame["sublayer"].map(SUBLAYER_TITLES) + " dropped at layer " + frame["layer"].astype(str))
    frame = with_panel(frame, "sublayer_title", "column")
    rows = [_step_lines(frame, panel, "column", ordered(frame, "series")) for panel in ordered(frame, "panel")]
    t = f"Figs 5, 6, 16, 17 · Theory vs measurement along the decoding, middle layer ({count_text(frame)})"
    sub = ("mean over prompts per decoding step (step 0 = prefill), band: 95 % CI (bootstrap over prompts); "
           "estimate: Theorem 1, 2 or 3")
    return finish(alt.vconcat(*rows).resolve_scale(color="shared"), t, sub)


def theory_temperature(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Fig 11: the Theorem 2 / 3 comparison at the middle attention layer, one column per temperature."""
    frame = frame.assign(t_title="T = " + frame["temperature"].map("{:g}".format))
    frame = with_panel(frame, "t_title", "column")
    rows = [_step_lines(frame, panel, "column", ordered(frame, "series")) for panel in ordered(frame, "panel")]
    t = f"Fig 11 · Temperature ablation: measured vs estimated, middle attention layer dropped ({count_text(frame)})"
    sub = ("mean over prompts per decoding step, band: 95 % CI (bootstrap over prompts); all temperatures "
           "compare the same dense trajectory")
    return finish(alt.vconcat(*rows).resolve_scale(color="shared"), t, sub)


def _step_lines(frame: pd.DataFrame, panel: str, column: str, series: list[str]) -> alt.FacetChart:
    """One row of a step figure: the lines of ``panel``; ``series`` are those of the whole figure, so every
    row shares one colour scale."""
    x = alt.X("step:Q", title="decoding step", axis=STEP_AXIS, scale=alt.Scale(nice=False))
    color = alt.Color("series:N", title="series", scale=scale(SERIES_COLORS, present=series))
    band = alt.Chart().mark_area(opacity=0.15).encode(x=x, y=alt.Y("ci_lo:Q", title=panel), y2="ci_hi:Q", color=color)
    line = alt.Chart().mark_line(strokeWidth=1.5).encode(
        x=x,
        y=alt.Y("value:Q", title=panel),
        color=color,
        strokeDash=alt.StrokeDash("series:N", legend=None, scale=scale([[5, 3] if s == "estimate" else [1, 0] for s in series], series)),
        tooltip=["series", "step", alt.Tooltip("value:Q", format=".3g"), alt.Tooltip("ci_lo:Q", format=".3g"),
                 alt.Tooltip("ci_hi:Q", format=".3g"), "n_prompts"],
    )
    chart = alt.layer(band, line, data=frame[frame["panel"] == panel]).properties(width=PANEL_WIDTH + 40, height=PANEL_HEIGHT - 30)
    return chart.facet(column=alt.Column(f"{column}:N", title=None, sort=ordered(frame, column)))


def theory_scatter(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Figs 14–17 in one: log–log density of (estimate, measured) pairs, Pearson r in each panel title."""
    frame = with_panel(frame, "label", "column")
    diagonal = (
        frame.groupby("column", sort=False)
        .apply(lambda g: pd.Series({"lo": min(g["estimate_lo"].min(), g["measured_lo"].min()),
                                    "hi": max(g["estimate_hi"].max(), g["measured_hi"].max())}), include_groups=False)
        .reset_index()
        .melt(id_vars="column", value_vars=["lo", "hi"], value_name="v")
    )
    cells = alt.Chart(frame).mark_rect().encode(
        x=alt.X("estimate_lo:Q", title="Theorem estimate", scale=alt.Scale(type="log")),
        x2="estimate_hi:Q",
        y=alt.Y("measured_lo:Q", title="measured", scale=alt.Scale(type="log")),
        y2="measured_hi:Q",
        color=alt.Color("n:Q", title="pairs per cell", scale=alt.Scale(type="log", scheme="viridis")),
        tooltip=["n", alt.Tooltip("estimate_lo:Q", format=".2e"), alt.Tooltip("measured_lo:Q", format=".2e")],
    )
    line = alt.Chart(diagonal).mark_line(color="#d62728", strokeDash=[4, 3]).encode(x="v:Q", y="v:Q")
    panels = []
    for column in ordered(frame, "column"):
        pick = f"datum.column == {column!r}"
        panels.append(
            alt.layer(cells.transform_filter(pick), line.transform_filter(pick))
            .properties(width=PANEL_WIDTH, height=PANEL_WIDTH, title=column)
        )
    rows = [alt.hconcat(*panels[i:i + 2]) for i in range(0, len(panels), 2)]
    t = "Figs 14–17 · Theorem estimate vs measured over all layers and steps (Pearson r, Spearman ρ)"
    sub = ("each sublayer dropped alone; colour: number of (layer, sublayer, prompt, step) pairs per cell; "
           "values below 1e-8 in the lowest cells; dashed: y = x")
    return finish(alt.vconcat(*rows), t, sub)
