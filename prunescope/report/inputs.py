"""What the report reads: the configuration's report temperature and needs, and which files feed which figure.

The workflow hands this module typed records of the outputs upstream rules write (never paths to parse):
:class:`MetricsOutput` for each metrics table (the :class:`prunescope.targets.Table` records of
``RunTargets.metrics_tables``) and :class:`TaskOutput` for each task table (:func:`task_outputs`). Light on
purpose (no Altair, no DuckDB): the rules import it at parse time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from prunescope import paths
from prunescope.report.catalog import FigureInfo
from prunescope.targets import Table as MetricsOutput  # path, model, variant, probe, probe_set
from prunescope.variants import parse_variant

PAPER_TEMPERATURE = 1.0  # the paper's analysis temperature
GROUPS = ("layerwise_drop", "layerwise_pruned", "generation", "subspace", "tasks")
PAPER_GROUPS = ("paper_fig1", "paper_fig4")
PROBES = ("layerwise", "generation", "subspace")


class TaskOutput(NamedTuple):
    """One task table of a (model, variant): ``task`` None is the summary, else that task's per-item table."""

    path: str
    model: str
    variant: str
    task: str | None


def task_outputs(models: Iterable[str], variants: Iterable[str], task_names: Sequence[str]) -> list[TaskOutput]:
    """The task stage's tables of every (model, variant): its summary, then one per-item table per task; none
    when no task is configured."""
    if not task_names:
        return []
    records = []
    for model in models:
        for variant in variants:
            records.append(TaskOutput(paths.fill(paths.TASK_SUMMARY, model=model, variant=variant), model, variant, None))
            records += [TaskOutput(paths.fill(paths.TASK_TABLE, model=model, variant=variant, task=task), model, variant,
                                   task) for task in task_names]
    return records


def report_temperature(temperatures: Sequence[float], probe_temperature: float) -> float:
    """The temperature the report compares at: the paper's T = 1 when the metrics stage computed it, else the
    probes' own temperature when computed, else the first computed one."""
    if not temperatures:
        raise ValueError("metrics.temperatures is empty; the report needs at least one temperature")
    for candidate in (PAPER_TEMPERATURE, probe_temperature):
        if candidate in temperatures:
            return float(candidate)
    return float(temperatures[0])


def configured_needs(variants: Iterable[str], multiple_choice_sets: Iterable[str], benchmarks: Iterable) -> set[str]:
    """The :data:`prunescope.report.catalog.NEEDS` keys a configuration satisfies."""
    kinds = {parse_variant(v).kind for v in variants}
    needs = {kind for kind in ("drop", "prune", "quant") if kind in kinds}
    if kinds & {"prune", "quant"}:
        needs.add("sublayer_variant")
    if kinds - {"dense"}:
        needs.add("variant")
    if list(multiple_choice_sets):
        needs.add("multiple_choice")
    if list(benchmarks):
        needs.add("tasks")
    return needs


def input_groups(metrics: Iterable[MetricsOutput], tasks: Iterable[TaskOutput]) -> dict[str, dict[str, list[str]]]:
    """{group: {view: paths}} for every group of :data:`GROUPS`; a metrics group feeds the ``metrics`` view,
    the ``tasks`` group the ``tasks`` (summaries) and ``task_samples`` (per-item) views."""
    groups = {group: {"metrics": []} for group in GROUPS if group != "tasks"}
    groups["tasks"] = {"tasks": [], "task_samples": []}
    for record in metrics:
        if record.probe not in PROBES:
            raise ValueError(f"metrics table {record.path}: unknown probe {record.probe!r}; known: {list(PROBES)}")
        if record.probe == "layerwise":
            group = "layerwise_drop" if record.variant == "dense" else "layerwise_pruned"
        else:
            group = record.probe
        groups[group]["metrics"].append(record.path)
    for record in tasks:
        groups["tasks"]["tasks" if record.task is None else "task_samples"].append(record.path)
    return groups


def view_inputs(
    reads: Iterable[str], groups: Mapping[str, Mapping[str, list[str]]], paper_files: Mapping[str, str]
) -> dict[str, list[str] | str]:
    """The named inputs of a job reading ``reads``: ``metrics``, ``tasks`` and ``task_samples`` file lists
    (each path once, in order) and one path per paper group."""
    views: dict[str, list[str] | str] = {"metrics": [], "tasks": [], "task_samples": []}
    for group in reads:
        if group in PAPER_GROUPS:
            views[group] = paper_files[group]
        elif group in groups:
            for view, paths in groups[group].items():
                views[view] += [p for p in paths if p not in views[view]]
        else:
            raise ValueError(f"unknown report input group {group!r}; known: {[*GROUPS, *PAPER_GROUPS]}")
    return views


FILE_KINDS = {"png": "PNG", "svg": "SVG", "csv": "data (CSV)", "html": "HTML"}


def report_output(stem: str, suffix: str, caption: str, category: str, title: str) -> dict[str, object]:
    """The arguments of Snakemake's ``report()`` for ``results/report/{stem}.{suffix}``: listed in the
    Snakemake report under ``category`` with the caption ``reports/{caption}.rst`` (relative to rules/)."""
    return {"value": f"{paths.REPORT}/{stem}.{suffix}", "caption": f"../reports/{caption}.rst", "category": category,
            "labels": {"figure": title, "file": FILE_KINDS[suffix]}}


def figure_outputs(figure: FigureInfo) -> dict[str, dict[str, object]]:
    """{png, svg, csv: :func:`report_output`} of one figure."""
    return {suffix: report_output(figure.name, suffix, figure.name, figure.category, figure.title)
            for suffix in ("png", "svg", "csv")}


def figure_inputs(
    figures: Iterable[FigureInfo], groups: Mapping[str, Mapping[str, list[str]]], paper_files: Mapping[str, str]
) -> dict[str, dict[str, list[str] | str]]:
    """{figure name: :func:`view_inputs` of what it reads}."""
    return {figure.name: view_inputs(figure.reads, groups, paper_files) for figure in figures}
