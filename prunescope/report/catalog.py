"""The report's figures: names, titles, what each reads, and when it can be drawn.

Light on purpose (no Altair, no DuckDB): the workflow imports it while parsing the rules. A figure
``name`` owns ``reports/{name}.sql`` (its query), ``reports/{name}.rst`` (its caption) and the outputs
``results/report/{name}.{png,svg,csv}``; its chart builder is looked up in
:data:`prunescope.report.figures.CHARTS`.

``reads`` names groups of input files, which the workflow maps to paths:

- ``layerwise_drop``: the dense model's drop-mode layer-wise metrics, per model and probe set;
- ``layerwise_pruned``: the pruned-mode layer-wise metrics of every intra-layer variant;
- ``generation``: the generation metrics of every non-dense variant;
- ``subspace``: the subspace metrics of every non-dense variant on multiple-choice probe sets;
- ``tasks``: every variant's task summary;
- ``paper_fig1``, ``paper_fig4``: the paper's figure data in ``reports/paper_data/``.

``needs`` lists what the configuration must contain for the figure to have data (see
:func:`plan`); a figure whose needs are unmet gets no rule, and the page says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NEEDS = {
    "tasks": "tasks (config key `tasks`)",
    "drop": "inter-layer variants (drop-{attn|mlp|block}-{k})",
    "prune": "intra-layer variants ({method}-{pattern})",
    "variant": "variants besides dense",
    "multiple_choice": "multiple-choice probe sets",
}


@dataclass(frozen=True)
class FigureInfo:
    name: str
    title: str
    category: str
    reads: tuple[str, ...]
    needs: tuple[str, ...] = ()


FIGURES = (
    FigureInfo("fig01_drop_tasks", "Fig 1 · Task scores vs dropped layers", "Tasks",
               ("tasks", "paper_fig1"), ("tasks", "drop")),
    FigureInfo("fig03_intra_tasks", "Figs 3, 9 · Intra-layer pruning patterns per task", "Tasks",
               ("tasks",), ("tasks", "prune")),
    FigureInfo("fig04_hierarchy_drop", "Fig 4 · Layer-wise hierarchy, each sublayer dropped",
               "Layer-wise hierarchy", ("layerwise_drop", "paper_fig4")),
    FigureInfo("fig13_hierarchy_pruned", "Fig 13 · Layer-wise hierarchy, each sublayer pruned",
               "Layer-wise hierarchy", ("layerwise_pruned",), ("prune",)),
    FigureInfo("fig06_theory_steps", "Figs 5, 6, 16, 17 · Theory vs measurement per step", "Theory vs measurement",
               ("layerwise_drop",)),
    FigureInfo("fig14_theory_scatter", "Figs 14–17 · Estimate vs measured, all layers and steps",
               "Theory vs measurement", ("layerwise_drop",)),
    FigureInfo("fig11_theory_temperature", "Fig 11 · Temperature ablation", "Theory vs measurement",
               ("layerwise_drop",)),
    FigureInfo("fig07_generation", "Figs 7, 12 · Generation divergence", "Generation",
               ("generation",), ("variant",)),
    FigureInfo("fig08_option_logprobs", "Fig 8b · Option-token log-probabilities", "Categorical subspace",
               ("subspace",), ("variant", "multiple_choice")),
    FigureInfo("fig08_subspace_agreement", "Fig 8 · Argmax agreement in the option subspace",
               "Categorical subspace", ("subspace",), ("variant", "multiple_choice")),
)  # fmt: skip
BY_NAME = {figure.name: figure for figure in FIGURES}

# The summary table is a query too (reports/summary.sql); it reads these and is always built.
SUMMARY_READS = ("generation", "tasks")


def plan(present: Iterable[str]) -> tuple[list[FigureInfo], dict[str, str]]:
    """The figures a configuration can draw, and {title: why not} for the others.

    ``present`` holds the :data:`NEEDS` keys the configuration satisfies.
    """
    present = set(present)
    unknown = sorted(present - set(NEEDS))
    if unknown:
        raise ValueError(f"unknown report need(s) {unknown}; allowed: {sorted(NEEDS)}")
    drawn, skipped = [], {}
    for figure in FIGURES:
        missing = [NEEDS[need] for need in figure.needs if need not in present]
        if missing:
            skipped[figure.title] = "not drawn: the configuration has no " + " and no ".join(missing)
        else:
            drawn.append(figure)
    return drawn, skipped
