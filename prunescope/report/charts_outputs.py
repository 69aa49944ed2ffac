"""Charts of the model outputs: generation divergence (Fig 7), the categorical subspace (Fig 8) and
task scores (Figs 1, 3, 9). Each builder takes the frame of its query (``reports/<figure>.sql``) and the
configured variant names, and returns a finished Altair chart."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from prunescope.report.style import (
    METHOD_COLORS, PANEL_HEIGHT, PANEL_WIDTH, SIDE_COLORS, STEP_AXIS, UNIT_COLORS, count_text, finish, ordered, scale,
    variant_colors, with_panel,
)  # fmt: skip

MODE_TITLES = {"free": "free-running (same seed)", "forced": "teacher-forced on the dense tokens"}
UNIT_TITLES = {"attn": "attention", "mlp": "MLP", "block": "block (ShortGPT)"}
KIND_TITLES = {"generative": "generative", "multiple_choice": "multiple choice", "retrieval": "retrieval"}


def generation(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Fig 7: per-step similarity of the variant's decoding to the dense one, one row per quantity, with a
    95 % band over prompts."""
    frame = frame.assign(mode_title=frame["mode"].map(MODE_TITLES))
    frame = with_panel(frame, "mode_title", "column")
    # model by model, free-running before teacher-forced
    columns = [c for model in ordered(frame, "model") for mode in MODE_TITLES
               for c in ordered(frame[(frame["model"] == model) & (frame["mode"] == mode)], "column")]
    colors = variant_colors(variants)
    rows = [step_bands(frame[frame["panel"] == panel], panel, colors, frame["label"]).facet(
                column=alt.Column("column:N", title=None, sort=columns))
            for panel in ordered(frame, "panel")]  # fmt: skip
    t = f"Fig 7 · Generation divergence: dense vs each variant, step by step ({count_text(frame)})"
    sub = ("mean over the prompts that reached the step, band: 95 % CI (bootstrap over prompts); final post-norm "
           "state h, logits z, probabilities p")
    return finish(alt.vconcat(*rows), t, sub)


def step_bands(part: pd.DataFrame, title: str, colors: dict[str, str], labels, width: int = PANEL_WIDTH + 90):
    """One panel of per-step lines, one colour per variant label, each with its 95 % band (``ci_lo``/``ci_hi``)."""
    x = alt.X("step:Q", title="decoding step", axis=STEP_AXIS, scale=alt.Scale(nice=False))
    color = alt.Color("label:N", title="variant", scale=scale(colors, present=labels), sort=list(colors),
                      legend=alt.Legend(symbolType="stroke", symbolOpacity=1, symbolStrokeWidth=3))
    band = alt.Chart().mark_area(opacity=0.12).encode(x=x, y=alt.Y("ci_lo:Q", title=title), y2="ci_hi:Q", color=color)
    line = alt.Chart().mark_line(strokeWidth=1.6).encode(
        x=x,
        y=alt.Y("value:Q", title=title, scale=alt.Scale(zero=False)),
        color=color,
        tooltip=["label", "step", alt.Tooltip("value:Q", format=".3g"), alt.Tooltip("ci_lo:Q", format=".3g"),
                 alt.Tooltip("ci_hi:Q", format=".3g"), "n_prompts"],
    )
    return alt.layer(band, line, data=part).properties(width=width, height=PANEL_HEIGHT - 30)


def option_logprobs(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Fig 8b: full-vocabulary log p of the options, ranked by the dense model, dense vs variant."""
    frame = with_panel(frame, "label", "column")
    base = alt.Chart().encode(
        x=alt.X("dense_rank:O", title="dense rank of the option", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("mean_logp:Q", title="mean log p of the option token", scale=alt.Scale(zero=False)),
        color=alt.Color("side:N", title="model", scale=scale(SIDE_COLORS)),
    )
    lines = base.mark_line(point=True).encode(tooltip=[
        "side", "dense_rank", alt.Tooltip("mean_logp:Q", format=".2f"), alt.Tooltip("ci_lo:Q", format=".2f"),
        alt.Tooltip("ci_hi:Q", format=".2f"), "n_prompts"])
    whiskers = base.mark_rule(strokeWidth=1.5).encode(y=alt.Y("ci_lo:Q", title="mean log p of the option token"), y2="ci_hi:Q")
    chart = alt.layer(whiskers, lines, data=frame).properties(width=PANEL_WIDTH - 60, height=PANEL_HEIGHT)
    chart = chart.facet(facet=alt.Facet("column:N", title=None, sort=ordered(frame, "column")), columns=4)
    t = f"Fig 8b · Option-token log-probabilities on multiple-choice prompts ({count_text(frame)} per rank at most)"
    sub = ("mean over the prompts with that many options, whiskers: 95 % CI (bootstrap over prompts); options ranked "
           "by the dense model (1 = its choice); parallel curves: the order survives")
    return finish(chart, t, sub)


def subspace_agreement(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Fig 8: how often each variant keeps the dense top-1 token, and the dense argmax among the options."""
    frame = with_panel(frame, "label", "column")
    measures = ordered(frame, "measure")
    x = alt.X("column:N", title="variant", sort=ordered(frame, "column"), axis=alt.Axis(labelAngle=-40))
    offset = alt.XOffset("measure:N", sort=measures)
    bars = alt.Chart().mark_bar().encode(
        x=x, xOffset=offset,
        y=alt.Y("agree_pct:Q", title="agreement with the dense model (%)", scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("measure:N", title="what agrees", sort=measures,
                        scale=scale(["#9ecae1", "#08519c"], measures)),
        tooltip=["label", "measure", alt.Tooltip("agree_pct:Q", format=".1f"), alt.Tooltip("ci_lo:Q", format=".1f"),
                 alt.Tooltip("ci_hi:Q", format=".1f"), "n_prompts"],
    )
    whiskers = alt.Chart().mark_rule(color="black").encode(x=x, xOffset=offset, y="ci_lo:Q", y2="ci_hi:Q")
    chart = alt.layer(bars, whiskers, data=frame).properties(
        width=max(PANEL_WIDTH, 42 * frame["column"].nunique()), height=PANEL_HEIGHT + 40)
    t = f"Fig 8 · Categorical subspace: top-token vs option-argmax agreement ({count_text(frame, unit='items')})"
    sub = ("share of multiple-choice items on which the variant agrees with the dense model; whiskers: 95 % CI "
           "(bootstrap over items)")
    return finish(chart, t, sub)


def drop_tasks(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Fig 1: task score vs dropped layers per unit; the paper's curves faint in their own panels."""
    frame = frame.assign(task_title=frame["task"] + " · " + frame["task_kind"].map(KIND_TITLES).fillna(frame["task_kind"]))
    ours = with_panel(frame[frame["source"] == "this run"], "task_title", "column")
    paper = frame[frame["source"] == "paper"]
    paper = paper.assign(column="paper (Qwen2.5-7B) · " + paper["task_title"])
    frame = pd.concat([ours, paper], ignore_index=True)
    frame = frame.assign(unit_title=frame["unit"].map(UNIT_TITLES))
    sort = [c for kind in KIND_TITLES for c in ordered(frame[frame["task_kind"] == kind], "column")]
    sort += [c for c in ordered(frame, "column") if c not in sort]
    units = {UNIT_TITLES[u]: c for u, c in UNIT_COLORS.items()}
    x = alt.X("k:Q", title="dropped layers k (0 = dense)", axis=STEP_AXIS)
    color = alt.Color("unit_title:N", title="dropped unit", scale=scale(units, present=frame["unit_title"]))
    lines = alt.Chart().mark_line(point=alt.OverlayMarkDef(size=18)).encode(
        x=x,
        y=alt.Y("score_pct:Q", title="score (%)"),
        color=color,
        opacity=alt.Opacity("source:N", title="source", scale=scale([1.0, 0.4], ["this run", "paper"])),
        strokeDash=alt.StrokeDash("source:N", title="source", scale=scale([[1, 0], [5, 3]], ["this run", "paper"])),
        tooltip=["source", "task", "metric", "unit", "k", alt.Tooltip("score_pct:Q", format=".1f"),
                 alt.Tooltip("lo_pct:Q", format=".1f"), alt.Tooltip("hi_pct:Q", format=".1f"), "n_items"],
    )
    whiskers = (alt.Chart().mark_rule(strokeWidth=1.2, opacity=0.7)
                .encode(x=x, y=alt.Y("lo_pct:Q", title="score (%)"), y2="hi_pct:Q", color=color)
                .transform_filter("datum.source == 'this run'"))  # fmt: skip
    chart = alt.layer(whiskers, lines, data=frame).properties(width=PANEL_WIDTH - 40, height=PANEL_HEIGHT)
    chart = chart.facet(facet=alt.Facet("column:N", title=None, sort=sort), columns=4)
    chart = chart.resolve_scale(x="independent", y="independent")
    ours = frame[frame["source"] == "this run"]
    t = f"Fig 1 · Task scores vs number of dropped layers ({count_text(ours, 'n_items', 'items per task')})"
    sub = ("this run: each task's primary metric, whiskers: 95 % CI (bootstrap over items); faint dashed panels: "
           "the paper's Fig 1 (Qwen2.5-7B-Instruct, inferred)")
    return finish(chart, t, sub)


def intra_tasks(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Figs 3, 9: task score of the dense model and of each method at each sparsity pattern."""
    frame = frame.assign(task_title=frame["task"] + " · " + frame["task_kind"].map(KIND_TITLES).fillna(frame["task_kind"]))
    frame = with_panel(frame, "task_title", "column")
    patterns = list(frame.sort_values("pattern_sort", kind="stable")["pattern_label"].drop_duplicates())
    methods = [m for m in METHOD_COLORS if m in set(frame["method"])]
    x = alt.X("pattern_label:N", title="sparsity pattern", sort=patterns, axis=alt.Axis(labelAngle=0))
    offset = alt.XOffset("method:N", sort=methods)
    bars = alt.Chart().mark_bar().encode(
        x=x, xOffset=offset, y=alt.Y("score_pct:Q", title="score (%)"),
        color=alt.Color("method:N", title="method", sort=methods, scale=scale({m: METHOD_COLORS[m] for m in methods})),
        tooltip=["label", "task", "metric", alt.Tooltip("score_pct:Q", format=".1f"), alt.Tooltip("lo_pct:Q", format=".1f"),
                 alt.Tooltip("hi_pct:Q", format=".1f"), "n_items"],
    )
    errors = alt.Chart().mark_rule(color="black").encode(x=x, xOffset=offset, y="lo_pct:Q", y2="hi_pct:Q")
    chart = alt.layer(bars, errors, data=frame).properties(width=PANEL_WIDTH, height=PANEL_HEIGHT)
    chart = chart.facet(facet=alt.Facet("column:N", title=None, sort=ordered(frame, "column")), columns=3)
    t = f"Figs 3, 9 · Intra-layer pruning: task scores by method and sparsity pattern ({count_text(frame, 'n_items', 'items per task')})"
    sub = "each task's primary metric; whiskers: 95 % CI (bootstrap over items)"
    return finish(chart.resolve_scale(y="independent"), t, sub)
