"""Every report figure renders offline to a non-empty PNG and SVG from the fixture results, and the page
built from them is one self-contained file that loads nothing from the network."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pandas as pd
import pytest
from docutils.core import publish_parts

from prunescope.report.catalog import BY_NAME, FIGURES, plan
from prunescope.report.figures import CHARTS, build_figure, chart_figure
from prunescope.report.page import PageFigure, caption_html, render_page
from prunescope.report.summary import build_summary, format_value
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
    summary = {kind: root / "report" / f"summary.{kind}" for kind in ("parquet", "csv", "html")}
    build_summary(ROOT / "reports" / "summary.sql", files, summary, {"temperature": 1.0})
    return root, build_all(root, files, list(CHARTS)), summary


def test_the_catalog_and_the_chart_builders_name_the_same_figures():
    assert [f.name for f in FIGURES] == list(BY_NAME) and set(BY_NAME) == set(CHARTS)
    for figure in FIGURES:
        assert (ROOT / "reports" / f"{figure.name}.sql").is_file() and (ROOT / "reports" / f"{figure.name}.rst").is_file()


@pytest.mark.parametrize("name", list(CHARTS))
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


@pytest.mark.parametrize("name", ["fig04_hierarchy_drop", "fig07_generation", "fig14_theory_scatter", "fig01_drop_tasks"])
def test_several_models_get_their_own_panels(tmp_path, name):
    files = {"metrics": [], "tasks": []}
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
    page = render_page(figures, pd.read_parquet(summary["parquet"]), (ROOT / "reports" / "summary.rst").read_text(),
                       skipped, {"models": ["m1"], "report temperature T": 1.0})
    assert page.startswith("<!doctype html>")
    assert not re.search(r"""<script[^>]*\bsrc\s*=|<link\b|(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "<script" not in page.lower()  # nothing to run, so nothing to fetch
    assert page.count('src="data:image/svg+xml;base64,') == len(CHARTS)
    assert page.count("<section id=") == len(CHARTS) + 2  # figures, the summary and "not drawn"
    assert "Fig 1 · Task scores vs dropped layers</b>: not drawn: the configuration has no tasks" in page
    assert "<table class='summary'>" in page and "−50.0%" in page  # wanda-2of4's generative change


def test_summary_files_and_cell_formats(built):
    _, _, summary = built
    frame = pd.read_parquet(summary["parquet"])
    assert frame["variant"].tolist() == ["dense", "wanda-unstructured50", "wanda-2of4", "drop-attn-1",
                                         "drop-attn-2", "drop-mlp-1"]
    assert "<table" in summary["html"].read_text() and len(pd.read_csv(summary["csv"])) == 6
    assert [format_value(v, "relative") for v in (-0.5, 0.0123, float("nan"))] == ["−50.0%", "+1.2%", "—"]
    assert format_value(4.6, "nats") == "4.6" and format_value(None, "nats") == "—"


@pytest.mark.parametrize("caption", sorted(p.name for p in (ROOT / "reports").glob("*.rst")))
def test_captions_are_clean_rst_without_external_references(caption):
    text = (ROOT / "reports" / caption).read_text()
    # halt on any warning (e.g. a stray '|' read as a substitution), as Snakemake's report would print it
    publish_parts(text, writer="html5", settings_overrides={"halt_level": 2, "report_level": 5})
    body = caption_html(text)
    assert body.strip().startswith("<p>") and "http" not in body and "<a " not in body  # no links at all


def test_plan_names_what_is_missing():
    drawn, skipped = plan(["variant", "multiple_choice", "prune"])
    assert "fig13_hierarchy_pruned" in [f.name for f in drawn]
    assert skipped["Fig 1 · Task scores vs dropped layers"] == (
        "not drawn: the configuration has no tasks (config key `tasks`) and no inter-layer variants "
        "(drop-{attn|mlp|block}-{k})"
    )
    with pytest.raises(ValueError, match="unknown report need"):
        plan(["task"])
