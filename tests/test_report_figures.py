"""Every report figure renders offline to a non-empty PNG and SVG from the fixture results, and the page
built from them is one self-contained file that loads nothing from the network."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pandas as pd
import pytest
from docutils.core import publish_parts

from prunescope.report.catalog import BY_NAME, FIGURES, plan
from prunescope.report.figures import build_figure, chart_figure
from prunescope.report.page import PageFigure, caption_html, read_table, render_page
from prunescope.report.summary import QUERIES, build_summary, format_interval, format_value
from tests.test_report_fixture import VARIANTS, write_fixture

ROOT = Path(__file__).resolve().parents[1]


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails on anything that is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def build_all(root: Path, files, names) -> dict[str, dict[str, Path]]:
    outputs = {}
    for name in names:
        outputs[name] = {kind: root / "report" / f"{name}.{kind}" for kind in ("csv", "png", "svg")}
        build_figure(name, ROOT / "reports" / f"{name}.sql", files, outputs[name], VARIANTS, {"temperature": 1.0})
    return outputs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_figures")
    files = write_fixture(root)
    summary = summary_outputs(root)
    build_summary(SUMMARY_QUERIES, files, summary, {"temperature": 1.0})
    return root, build_all(root, files, NAMES), summary


NAMES = [figure.name for figure in FIGURES]
SUMMARY_QUERIES = {"summary": ROOT / "reports" / "summary.sql", "tasks": ROOT / "reports" / "summary_tasks.sql",
                   "regime": ROOT / "reports" / "theory_regime.sql", "predictor": ROOT / "reports" / "task_predictor.sql"}


def summary_outputs(root: Path) -> dict[str, Path]:
    report = root / "report"
    return {"parquet": report / "summary.parquet", "csv": report / "summary.csv", "html": report / "summary.html",
            "tasks_csv": report / "summary_tasks.csv", "regime_csv": report / "regime_layers.csv",
            "findings": report / "findings.json"}


@pytest.mark.parametrize("name", NAMES)
def test_each_figure_renders_to_png_svg_and_csv(built, name):
    _, outputs, _ = built
    width, height = png_size(outputs[name]["png"])
    assert width > 400 and height > 200
    assert outputs[name]["png"].stat().st_size > 10_000
    svg = outputs[name]["svg"].read_text()
    assert svg.startswith("<svg") and "<text" in svg
    title_start = BY_NAME[name].title.split(" · ")[0]  # e.g. "Fig 4"
    assert title_start in svg
    assert len(pd.read_csv(outputs[name]["csv"])) > 0


@pytest.mark.parametrize("name", ["fig04_hierarchy_drop", "fig07_generation", "fig14_theory_scatter", "fig01_drop_tasks",
                                  "theory_regime", "task_predictor"])
def test_several_models_get_their_own_panels(tmp_path, name):
    files = {"metrics": [], "tasks": [], "task_samples": []}
    for model in ("m1", "m2"):
        for view, paths in write_fixture(tmp_path, model).items():
            files[view] += paths
    outputs = build_all(tmp_path, files, [name])[name]
    assert png_size(outputs["png"])[0] > 400
    assert "m2 · " in outputs["svg"].read_text()  # panel headers name the model


def variant_color_map(spec: dict) -> dict[str, str]:
    """{variant label: colour} from the colour scale of a chart's Vega-Lite spec."""
    scales = [node["scale"] for node in _walk(spec) if isinstance(node, dict) and node.get("field") == "label"
              and "scale" in node and "range" in node["scale"]]
    assert scales, "no variant colour scale in the spec"
    return dict(zip(scales[0]["domain"], scales[0]["range"]))


def _walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from _walk(child)


def test_variant_colours_do_not_depend_on_what_a_figure_shows(built):
    _, outputs, _ = built
    frame = pd.read_csv(outputs["fig07_generation"]["csv"])
    everything = variant_color_map(chart_figure("fig07_generation", frame, VARIANTS).to_dict())
    drops_only = variant_color_map(chart_figure("fig07_generation", frame[frame["variant"].str.startswith("drop")],
                                                VARIANTS).to_dict())
    # the 4th non-dense variant in display order, whichever variants the figure holds
    assert everything["drop 2 attn"] == drops_only["drop 2 attn"] == "#d62728"
    assert set(drops_only) == {"drop 1 attn", "drop 2 attn", "drop 1 mlp"}  # the legend lists only what is drawn


def test_page_is_self_contained_and_offline(built):
    root, outputs, summary = built
    figures = [PageFigure(name, BY_NAME[name].title, paths["svg"], ROOT / "reports" / f"{name}.rst")
               for name, paths in outputs.items()]
    _, skipped = plan(["variant", "multiple_choice"])  # pretend tasks and both variant kinds are absent
    findings = json.loads(summary["findings"].read_text())["lines"]
    page = render_page(figures, pd.read_parquet(summary["parquet"]), (ROOT / "reports" / "summary.rst").read_text(),
                       skipped, {"models": ["m1"], "report temperature T": 1.0}, tasks=read_table(summary["tasks_csv"]),
                       findings=findings, regime=read_table(summary["regime_csv"]))
    assert page.startswith("<!doctype html>")
    assert not re.search(r"""<script[^>]*\bsrc\s*=|<link\b|(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "<script" not in page.lower()  # nothing to run, so nothing to fetch
    assert page.count('src="data:image/svg+xml;base64,') == len(NAMES)
    assert page.count("<section id=") == len(NAMES) + 2  # figures, the summary and "not drawn"
    assert "Fig 1 · Task scores vs dropped layers</b>: not drawn: the configuration has no tasks" in page
    assert "<table class='summary'>" in page and "−50.0% [" in page  # wanda-2of4's generative change, with its CI
    assert "<td>Wanda 2:4</td>" in page and "<td>AWQ 4-bit g64</td>" in page  # the variant labels
    assert "<tr class='kind'><th colspan" in page and "weight-only quantisation" in page  # rows grouped by kind
    assert "<td class='num noise'>" in page  # drop-attn-1's multiple-choice change is within noise
    assert "Theorem 3 · KL on m1: the estimate is within ±20 %" in page  # the regime finding
    assert "Spearman ρ = 1.00 over 6 variants" in page  # the predictor finding
    assert "<table class='summary tasks'>" in page and "<table class='summary regime'>" in page


def test_summary_files_and_cell_formats(built):
    _, _, summary = built
    frame = pd.read_parquet(summary["parquet"])
    assert frame["variant"].tolist() == ["dense", "wanda-unstructured50", "wanda-2of4", "drop-attn-1",
                                         "drop-attn-2", "drop-mlp-1", "quant-awq-w4g64"]
    assert "<table" in summary["html"].read_text() and len(pd.read_csv(summary["csv"])) == 7
    assert len(pd.read_csv(summary["tasks_csv"])) == 7 * 4
    layers = pd.read_csv(summary["regime_csv"])
    assert len(layers) == 2 * 4 * 2 and set(layers["frac_inside"]) == {1.0}  # theorems x layers x sublayers
    findings = json.loads(summary["findings"].read_text())
    assert len(findings["lines"]) == 2 + 2 and findings["bootstrap"]["n_boot"] == 2000
    assert [format_value(v, "relative") for v in (-0.5, 0.0123, float("nan"))] == ["−50.0%", "+1.2%", "—"]
    assert format_value(4.6, "nats") == "4.6" and format_value(None, "nats") == "—"
    assert format_interval(-0.2, 0.01, "relative") == " [−20.0, +1.0]" and format_interval(None, 1, "nats") == ""


@pytest.mark.parametrize("caption", sorted(p.name for p in (ROOT / "reports").glob("*.rst")))
def test_captions_are_clean_rst_without_external_references(caption):
    text = (ROOT / "reports" / caption).read_text()
    # halt on any warning (e.g. a stray '|' read as a substitution), as Snakemake's report would print it
    publish_parts(text, writer="html5", settings_overrides={"halt_level": 2, "report_level": 5})
    body = caption_html(text)
    assert body.strip().startswith("<p>") and "http" not in body and "<a " not in body  # no links at all


def test_plan_names_what_is_missing():
    drawn, skipped = plan(["variant", "multiple_choice", "prune", "sublayer_variant"])
    assert "fig13_hierarchy_pruned" in [f.name for f in drawn]
    assert skipped["Fig 1 · Task scores vs dropped layers"] == (
        "not drawn: the configuration has no tasks (config key `tasks`) and no inter-layer variants "
        "(drop-{attn|mlp|block}-{k})"
    )
    with pytest.raises(ValueError, match="unknown report need"):
        plan(["task"])
