"""Charts of the model outputs: generation divergence (Figs 7, 12), the categorical subspace (Fig 8) and
task scores (Figs 1, 3, 9). Each builder takes the frame of its query (``reports/<figure>.sql``) and the
configured variant names, and returns a finished Altair chart."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd

from prunescope.report.style import (
    METHOD_COLORS, PANEL_HEIGHT, PANEL_WIDTH, SIDE_COLORS, STEP_AXIS, UNIT_COLORS, finish, ordered, scale, variant_colors,
    with_panel,
)  # fmt: skip

MODE_TITLES = {"free": "free-running (same seed)", "forced": "teacher-forced on the dense tokens"}
UNIT_TITLES = {"attn": "attention", "mlp": "MLP", "block": "block (ShortGPT)"}
KIND_TITLES = {"generative": "generative", "multiple_choice": "multiple choice", "retrieval": "retrieval"}


def generation(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Figs 7, 12: per-step similarity of the variant's decoding to the dense one, one row per quantity."""
    frame = frame.assign(mode_title=frame["mode"].map(MODE_TITLES))
    frame = with_panel(frame, "mode_title", "column")
    # model by model, free-running before teacher-forced
    columns = [c for model in ordered(frame, "model") for mode in MODE_TITLES
               for c in ordered(frame[(frame["model"] == model) & (frame["mode"] == mode)], "column")]
    colors = variant_colors(variants)
    rows = []
    for panel in ordered(frame, "panel"):
        part = frame[frame["panel"] == panel]
        chart = alt.Chart(part).mark_line(strokeWidth=1.6).encode(
            x=alt.X("step:Q", title="decoding step", axis=STEP_AXIS, scale=alt.Scale(nice=False)),
            y=alt.Y("value:Q", title=panel, scale=alt.Scale(zero=False)),
            color=alt.Color("label:N", title="variant", scale=scale(colors, present=frame["label"]), sort=list(colors)),
            tooltip=["label", "step", alt.Tooltip("value:Q", format=".3g"), "n_prompts"],
        ).properties(width=PANEL_WIDTH + 90, height=PANEL_HEIGHT - 30)
        rows.append(chart.facet(column=alt.Column("column:N", title=None, sort=columns)))
    t = "Figs 7, 12 · Generation divergence: dense vs each variant, step by step"
    sub = "mean over prompts that reached the step; final post-norm state h, logits z, probabilities p"
    return finish(alt.vconcat(*rows), t, sub)


def option_logprobs(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Fig 8b: full-vocabulary log p of the options, ranked by the dense model, dense vs variant."""
    frame = with_panel(frame, "label", "column")
    base = alt.Chart().encode(
        x=alt.X("dense_rank:O", title="dense rank of the option", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("mean_logp:Q", title="mean log p of the option token", scale=alt.Scale(zero=False)),
        color=alt.Color("side:N", title="model", scale=scale(SIDE_COLORS)),
    )
    lines = base.mark_line(point=True).encode(tooltip=["side", "dense_rank", alt.Tooltip("mean_logp:Q", format=".2f"), "n_prompts"])
    chart = alt.layer(lines, data=frame).properties(width=PANEL_WIDTH - 60, height=PANEL_HEIGHT)
    chart = chart.facet(facet=alt.Facet("column:N", title=None, sort=ordered(frame, "column")), columns=4)
    t = "Fig 8b · Option-token log-probabilities on multiple-choice prompts"
    sub = "mean over prompts; options ranked by the dense model (1 = its choice); parallel curves: the order survives"
    return finish(chart, t, sub)


def subspace_agreement(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Fig 8: how often each variant keeps the dense top-1 token, and the dense argmax among the options."""
    frame = with_panel(frame, "label", "column")
    measures = ordered(frame, "measure")
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("column:N", title="variant", sort=ordered(frame, "column"), axis=alt.Axis(labelAngle=-40)),
        xOffset=alt.XOffset("measure:N", sort=measures),
        y=alt.Y("agree_pct:Q", title="agreement with the dense model (%)", scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("measure:N", title="what agrees", sort=measures,
                        scale=scale(["#9ecae1", "#08519c"], measures)),
        tooltip=["label", "measure", alt.Tooltip("agree_pct:Q", format=".1f"), "n_prompts"],
    ).properties(width=max(PANEL_WIDTH, 42 * frame["column"].nunique()), height=PANEL_HEIGHT + 40)
    t = "Fig 8 · Categorical subspace: top-token vs option-argmax agreement with the dense model"
    sub = "share of multiple-choice prompts on which the variant agrees with the dense model"
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
    chart = alt.Chart(frame).mark_line(point=alt.OverlayMarkDef(size=18)).encode(
        x=alt.X("k:Q", title="dropped layers k (0 = dense)", axis=STEP_AXIS),
        y=alt.Y("score_pct:Q", title="score (%)"),
        color=alt.Color("unit_title:N", title="dropped unit", scale=scale(units, present=frame["unit_title"])),
        opacity=alt.Opacity("source:N", title="source", scale=scale([1.0, 0.4], ["this run", "paper"])),
        strokeDash=alt.StrokeDash("source:N", title="source", scale=scale([[1, 0], [5, 3]], ["this run", "paper"])),
        tooltip=["source", "task", "metric", "unit", "k", alt.Tooltip("score_pct:Q", format=".1f")],
    ).properties(width=PANEL_WIDTH - 40, height=PANEL_HEIGHT)
    chart = chart.facet(facet=alt.Facet("column:N", title=None, sort=sort), columns=4)
    chart = chart.resolve_scale(x="independent", y="independent")
    t = "Fig 1 · Task scores vs number of dropped layers"
    sub = "this run: each task's primary metric; faint dashed panels: the paper's Fig 1 (Qwen2.5-7B-Instruct, inferred)"
    return finish(chart, t, sub)


def intra_tasks(frame: pd.DataFrame, variants: Sequence[str]) -> alt.TopLevelMixin:
    """Figs 3, 9: task score of the dense model and of each method at each sparsity pattern."""
    frame = frame.assign(task_title=frame["task"] + " · " + frame["task_kind"].map(KIND_TITLES).fillna(frame["task_kind"]))
    frame = with_panel(frame, "task_title", "column")
    frame = frame.assign(lo=frame["score_pct"] - frame["stderr_pct"], hi=frame["score_pct"] + frame["stderr_pct"])
    patterns = list(frame.sort_values("pattern_sort", kind="stable")["pattern_label"].drop_duplicates())
    methods = [m for m in METHOD_COLORS if m in set(frame["method"])]
    x = alt.X("pattern_label:N", title="sparsity pattern", sort=patterns, axis=alt.Axis(labelAngle=0))
    offset = alt.XOffset("method:N", sort=methods)
    bars = alt.Chart().mark_bar().encode(
        x=x, xOffset=offset, y=alt.Y("score_pct:Q", title="score (%)"),
        color=alt.Color("method:N", title="method", sort=methods, scale=scale({m: METHOD_COLORS[m] for m in methods})),
        tooltip=["label", "task", "metric", alt.Tooltip("score_pct:Q", format=".1f"), alt.Tooltip("stderr_pct:Q", format=".1f"), "n"],
    )
    errors = alt.Chart().mark_rule(color="black").encode(x=x, xOffset=offset, y="lo:Q", y2="hi:Q")
    chart = alt.layer(bars, errors, data=frame).properties(width=PANEL_WIDTH, height=PANEL_HEIGHT)
    chart = chart.facet(facet=alt.Facet("column:N", title=None, sort=ordered(frame, "column")), columns=3)
    t = "Figs 3, 9 · Intra-layer pruning: task scores by method and sparsity pattern"
    sub = "each task's primary metric; whiskers: ± one standard error from the task harness"
    return finish(chart.resolve_scale(y="independent"), t, sub)
