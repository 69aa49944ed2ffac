"""The report's inputs in the library: the figure registry (metadata and builders in one place, importable
without Altair), the report temperature, the configuration's needs and which files feed which job."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prunescope import paths
from prunescope.report.catalog import BY_NAME, FIGURES, NEEDS, plan, resolve
from prunescope.report.inputs import (
    MetricsOutput, TaskOutput, configured_needs, figure_inputs, figure_outputs, input_groups, report_temperature,
    task_outputs, view_inputs,
)  # fmt: skip

ROOT = Path(__file__).resolve().parents[1]


def test_the_registry_parses_without_altair_duckdb_or_torch():
    code = ("import sys, prunescope.report.catalog, prunescope.report.inputs; "
            "print(sorted(m for m in ('altair', 'duckdb', 'torch', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_every_figure_has_its_query_caption_and_a_callable_builder():
    assert len(BY_NAME) == len(FIGURES)
    for figure in FIGURES:
        assert (ROOT / "reports" / f"{figure.name}.sql").is_file() and (ROOT / "reports" / f"{figure.name}.rst").is_file()
        assert callable(figure.chart_builder()), figure.name
        assert figure.derive is None or callable(figure.derive_step())
        assert set(figure.needs) <= set(NEEDS)
    with pytest.raises(ValueError, match="module:function"):
        resolve("prunescope.report.charts_theory.regime")


def test_report_temperature_prefers_the_papers_then_the_probes():
    assert report_temperature([0.5, 1.0], 0.7) == 1.0
    assert report_temperature([0.5, 0.7], 0.7) == 0.7
    assert report_temperature([0.5, 0.3], 0.7) == 0.5
    with pytest.raises(ValueError, match="metrics.temperatures is empty"):
        report_temperature([], 1.0)


def test_needs_follow_the_variant_kinds_sets_and_tasks():
    assert configured_needs(["dense"], [], []) == set()
    assert configured_needs(["dense", "quant-awq-w4g128"], ["mc"], ["arc_easy"]) == {
        "quant", "sublayer_variant", "variant", "multiple_choice", "tasks"}
    assert configured_needs(["dense", "wanda-2of4", "drop-attn-2"], [], []) == {"prune", "drop", "sublayer_variant", "variant"}
    drawn, skipped = plan(configured_needs(["dense", "wanda-2of4"], ["mc"], []))
    names = [f.name for f in drawn]
    assert "fig13_hierarchy_pruned" in names and "fig12_compression" not in names and "task_predictor" not in names
    assert skipped[BY_NAME["fig12_compression"].title] == f"not drawn: the configuration has no {NEEDS['quant']}"


def records():
    metrics = [
        MetricsOutput("a/dense/layerwise-mc.parquet", "m", "dense", "layerwise", "mc"),
        MetricsOutput("a/wanda/layerwise-mc.parquet", "m", "wanda-2of4", "layerwise", "mc"),
        MetricsOutput("a/quant/layerwise-mc.parquet", "m", "quant-rtn-w4", "layerwise", "mc"),
        MetricsOutput("a/wanda/generation-mc.parquet", "m", "wanda-2of4", "generation", "mc"),
        MetricsOutput("a/wanda/subspace-mc.parquet", "m", "wanda-2of4", "subspace", "mc"),
    ]
    return metrics, task_outputs(["m"], ["dense", "wanda-2of4"], ["arc_easy", "gsm8k"])


def test_tables_map_to_groups_by_their_record_fields():
    metrics, tasks = records()
    groups = input_groups(metrics, tasks)
    assert groups["layerwise_drop"] == {"metrics": ["a/dense/layerwise-mc.parquet"]}
    assert groups["layerwise_pruned"]["metrics"] == ["a/wanda/layerwise-mc.parquet", "a/quant/layerwise-mc.parquet"]
    assert groups["generation"]["metrics"] == ["a/wanda/generation-mc.parquet"]
    assert groups["tasks"]["tasks"] == [paths.fill(paths.TASK_SUMMARY, model="m", variant=v) for v in ("dense", "wanda-2of4")]
    assert groups["tasks"]["task_samples"][:2] == ["results/m/dense/tasks/arc_easy.parquet",
                                                   "results/m/dense/tasks/gsm8k.parquet"]
    assert task_outputs(["m"], ["dense"], []) == []
    assert task_outputs(["m"], ["dense"], ["arc_easy"]) == [
        TaskOutput("results/m/dense/tasks/summary.parquet", "m", "dense", None),
        TaskOutput("results/m/dense/tasks/arc_easy.parquet", "m", "dense", "arc_easy")]
    with pytest.raises(ValueError, match="unknown probe 'decoding'"):
        input_groups([MetricsOutput("x", "m", "dense", "decoding", "mc")], [])


def test_each_figure_gets_the_views_of_what_it_reads():
    metrics, tasks = records()
    groups = input_groups(metrics, tasks)
    papers = {"paper_fig1": "p1.csv", "paper_fig4": "p4.csv"}
    inputs = figure_inputs(FIGURES, groups, papers)
    assert inputs["fig04_hierarchy_drop"] == {"metrics": ["a/dense/layerwise-mc.parquet"], "tasks": [],
                                              "task_samples": [], "paper_fig4": "p4.csv"}
    predictor = inputs["task_predictor"]
    assert predictor["metrics"] == ["a/wanda/generation-mc.parquet", "a/wanda/subspace-mc.parquet"]
    assert len(predictor["tasks"]) == 2 and len(predictor["task_samples"]) == 4
    both = view_inputs(["generation", "generation"], groups, papers)
    assert both["metrics"] == ["a/wanda/generation-mc.parquet"]  # each path once
    with pytest.raises(ValueError, match="unknown report input group 'task'"):
        view_inputs(["task"], groups, papers)


def test_figure_outputs_are_the_report_folder_files_with_their_captions():
    outputs = figure_outputs(BY_NAME["theory_regime"])
    assert sorted(outputs) == ["csv", "png", "svg"]
    assert outputs["svg"] == {"value": f"{paths.REPORT}/theory_regime.svg", "caption": "../reports/theory_regime.rst",
                              "category": "Theory vs measurement",
                              "labels": {"figure": BY_NAME["theory_regime"].title, "file": "SVG"}}
    assert (ROOT / "rules" / outputs["csv"]["caption"]).resolve().is_file()  # captions resolve from rules/
