"""The report rules under Snakemake: a tiny workflow made of rules/common.smk and rules/report.smk runs on the
fixture results, a rerun does nothing, and editing one figure's SQL reruns only that figure and the page."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunescope.report.catalog import FIGURES
from tests.test_report_fixture import VARIANTS, write_fixture

FIGURE_NAMES = [figure.name for figure in FIGURES]  # the fixture configuration draws every figure

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

SNAKEFILE = """\
import sys
sys.path.insert(0, {root!r})

from snakemake.utils import validate

configfile: "config.yaml"
validate(config, {schema!r})  # fills the schema defaults, as the main Snakefile does

include: {common!r}
include: {report!r}

rule all:
    input:
        paths.REPORT_PAGE,
    default_target: True
"""

CONFIG = {
    "models": {"m1": {"source": "embedded", "dtype": "float32", "chat_template": True}},
    "variants": VARIANTS,
    "device": "cpu",
    "calibration": {"dataset": "embedded", "n_samples": 4, "seqlen": 32, "seed": 0},
    "dropping": {"selection": "one_shot", "batch_size": 1},
    "probes": {"temperature": 1.0, "seed": 1, "max_new_tokens": 4,
               "sets": {"mc": {"kind": "multiple_choice", "n": 2}, "math": {"kind": "math", "n": 1}}},
    "metrics": {"temperatures": [0.5, 1.0]},
    "tasks": {"benchmarks": [{"name": "arc_easy", "kind": "multiple_choice"}]},  # read by the report only
}


def snakemake(workdir: Path, *args: str) -> str:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(workdir / "Snakefile"), "--directory",
               str(workdir), "--cores", "2", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    return result.stdout + result.stderr


def planned_jobs(text: str) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table ({} when nothing is to be done)."""
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("report_workflow")
    write_fixture(workdir)
    shutil.copytree(ROOT / "reports", workdir / "reports")  # a copy the test may edit
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (workdir / "Snakefile").write_text(SNAKEFILE.format(
        root=str(ROOT), schema=str(ROOT / "config" / "schema.yaml"), common=str(ROOT / "rules" / "common.smk"), report=str(ROOT / "rules" / "report.smk")))
    snakemake(workdir)
    return workdir


def test_every_figure_and_the_page_are_built(workdir):
    report = workdir / "results" / "report"
    for name in FIGURE_NAMES:
        for suffix in ("png", "svg", "csv"):
            assert (report / f"{name}.{suffix}").stat().st_size > 0, f"{name}.{suffix}"
        assert (workdir / "logs" / "report" / f"{name}.log").is_file()
    page = (report / "index.html").read_text()
    assert page.count("data:image/svg+xml;base64,") == len(FIGURE_NAMES) and "Not drawn" not in page
    for name in ("summary.parquet", "summary_tasks.csv", "regime_layers.csv", "findings.json"):
        assert (report / name).stat().st_size > 0, name
    assert "Where the theory holds, per layer" in page and "Spearman ρ" in page


def test_rerun_does_nothing(workdir):
    assert planned_jobs(snakemake(workdir, "--dry-run")) == {}


def test_editing_one_query_reruns_that_figure_and_the_page_only(workdir):
    sql = workdir / "reports" / "fig07_generation.sql"
    sql.write_text(sql.read_text() + "-- a comment is a change of content\n")
    assert planned_jobs(snakemake(workdir, "--dry-run")) == {"report_fig07_generation": 1, "report_page": 1, "all": 1}
    snakemake(workdir)
    # A caption is read by the page only (Snakemake's own report reads it when it is made).
    caption = workdir / "reports" / "fig04_hierarchy_drop.rst"
    caption.write_text(caption.read_text() + "\nEdited.\n")
    assert planned_jobs(snakemake(workdir, "--dry-run")) == {"report_page": 1, "all": 1}


def test_without_tasks_the_task_figures_have_no_rule(workdir):
    text = snakemake(workdir, "--config", "tasks={benchmarks: []}", "--list-target-rules")
    assert "report_fig04_hierarchy_drop" in text and "report_fig01_drop_tasks" not in text
    assert "report_fig03_intra_tasks" not in text
