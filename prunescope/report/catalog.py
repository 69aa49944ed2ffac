"""The report's figures, in one registry: names, titles, what each reads, when it can be drawn, and how it is
built (its chart builder and, for a figure whose data needs more than SQL, a derive step).

Light on purpose (no Altair, no DuckDB): the workflow imports it while parsing the rules, so builders are
named by dotted strings (``"module:function"``) and imported only when a figure is built
(:meth:`FigureInfo.chart_builder`, :meth:`FigureInfo.derive_step`). A figure ``name`` owns
``reports/{name}.sql`` (its query), ``reports/{name}.rst`` (its caption) and the outputs
``results/report/{name}.{png,svg,csv}``.

``reads`` names groups of input files (:data:`prunescope.report.inputs.GROUPS`), which
:mod:`prunescope.report.inputs` maps to paths:

- ``layerwise_drop``: the dense model's drop-mode layer-wise metrics, per model and probe set;
- ``layerwise_pruned``: the pruned-mode layer-wise metrics of every intra-layer or quantised variant;
- ``generation``: the generation metrics of every non-dense variant;
- ``subspace``: the subspace metrics of every non-dense variant on multiple-choice probe sets;
- ``tasks``: every variant's task summary and per-item task tables;
- ``paper_fig1``, ``paper_fig4``: the paper's figure data in ``reports/paper_data/``.

``needs`` lists what the configuration must contain for the figure to have data (see :func:`plan`); a
figure whose needs are unmet gets no rule, and the page says why.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

NEEDS = {
    "tasks": "tasks (config key `tasks`)",
    "drop": "inter-layer variants (drop-{attn|mlp|block}-{k})",
    "prune": "intra-layer variants ({method}-{pattern})",
    "sublayer_variant": "intra-layer or quantised variants (the pruned-mode layer-wise probe)",
    "quant": "quantised variants (quant-{rtn|gptq|awq}-w{bits}[g{group}])",
    "variant": "variants besides dense",
    "multiple_choice": "multiple-choice probe sets",
}

_LAYERS = "prunescope.report.charts_layers"
_OUTPUTS = "prunescope.report.charts_outputs"
_THEORY = "prunescope.report.charts_theory"


@dataclass(frozen=True)
class FigureInfo:
    name: str
    title: str
    category: str
    reads: tuple[str, ...]
    needs: tuple[str, ...]
    chart: str  # "module:function" taking (frame, variants) and returning a finished Altair chart
    derive: str | None = None  # "module:function" taking the query's frame and returning the chart's frame

    def chart_builder(self) -> Callable:
        return resolve(self.chart)

    def derive_step(self) -> Callable | None:
        return resolve(self.derive) if self.derive else None


FIGURES = (
    FigureInfo("fig01_drop_tasks", "Fig 1 · Task scores vs dropped layers", "Tasks",
               ("tasks", "paper_fig1"), ("tasks", "drop"), f"{_OUTPUTS}:drop_tasks"),
    FigureInfo("fig03_intra_tasks", "Figs 3, 9 · Intra-layer pruning patterns per task", "Tasks",
               ("tasks",), ("tasks", "prune"), f"{_OUTPUTS}:intra_tasks"),
    FigureInfo("fig04_hierarchy_drop", "Fig 4 · Layer-wise hierarchy, each sublayer dropped",
               "Layer-wise hierarchy", ("layerwise_drop", "paper_fig4"), (), f"{_LAYERS}:hierarchy_drop"),
    FigureInfo("fig13_hierarchy_pruned", "Fig 13 · Layer-wise hierarchy, each sublayer pruned or quantised",
               "Layer-wise hierarchy", ("layerwise_pruned",), ("sublayer_variant",), f"{_LAYERS}:hierarchy_pruned"),
    FigureInfo("fig06_theory_steps", "Figs 5, 6, 16, 17 · Theory vs measurement per step", "Theory vs measurement",
               ("layerwise_drop",), (), f"{_LAYERS}:theory_steps"),
    FigureInfo("fig14_theory_scatter", "Figs 14–17 · Estimate vs measured, all layers and steps",
               "Theory vs measurement", ("layerwise_drop",), (), f"{_LAYERS}:theory_scatter"),
    FigureInfo("theory_regime", "Where the theory holds · Theorems 2, 3 vs perturbation size", "Theory vs measurement",
               ("layerwise_drop",), (), f"{_THEORY}:regime", "prunescope.report.regime:figure_frame"),
    FigureInfo("fig11_theory_temperature", "Fig 11 · Temperature ablation", "Theory vs measurement",
               ("layerwise_drop",), (), f"{_LAYERS}:theory_temperature"),
    FigureInfo("fig07_generation", "Fig 7 · Generation divergence", "Generation",
               ("generation",), ("variant",), f"{_OUTPUTS}:generation"),
    FigureInfo("fig12_compression", "Fig 12 · Compression comparison: quantised, pruned, dropped", "Generation",
               ("generation",), ("quant",), f"{_THEORY}:compression"),
    FigureInfo("fig08_option_logprobs", "Fig 8b · Option-token log-probabilities", "Categorical subspace",
               ("subspace",), ("variant", "multiple_choice"), f"{_OUTPUTS}:option_logprobs"),
    FigureInfo("fig08_subspace_agreement", "Fig 8 · Argmax agreement in the option subspace",
               "Categorical subspace", ("subspace",), ("variant", "multiple_choice"), f"{_OUTPUTS}:subspace_agreement"),
    FigureInfo("task_predictor", "Predictor · Does a cheap probe predict task damage?", "Tasks",
               ("generation", "subspace", "tasks"), ("variant", "tasks"), f"{_THEORY}:predictor"),
)  # fmt: skip
BY_NAME = {figure.name: figure for figure in FIGURES}

# The summary is queries too (reports/summary*.sql, theory_regime.sql, task_predictor.sql); it reads these and
# is always built.
SUMMARY_READS = ("layerwise_drop", "generation", "subspace", "tasks")


def resolve(dotted: str) -> Callable:
    """The callable named ``"package.module:function"``."""
    module, _, attribute = dotted.partition(":")
    if not attribute:
        raise ValueError(f"builder {dotted!r} must be named 'module:function'")
    return getattr(importlib.import_module(module), attribute)


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
