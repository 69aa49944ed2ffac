"""Integration: the real workflow, run by Snakemake on a tiny checkpoint in a temporary directory.

A random-init Llama with a real BPE tokenizer is saved by the test and configured as a ``source: path``
model; Snakemake runs every stage end to end, a rerun does nothing, and a config edit reruns only the
rules it touches.
"""

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.tiny_checkpoint import save_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200,
                            env={**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    return result


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table."""
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def tiny_config(checkpoint: Path) -> dict:
    return {
        "models": {"tiny": {"source": "path", "path": str(checkpoint), "dtype": "float32", "chat_template": True}},
        "variants": ["dense", "magnitude-unstructured50", "wanda-unstructured50", "sparsegpt-2of4", "wanda-4of8",
                     "drop-attn-1", "drop-mlp-2", "drop-block-1"],
        "device": "cpu",
        "calibration": {"dataset": "embedded", "n_samples": 4, "seqlen": 32, "seed": 0},
        "pruning": {"batch_size": 2},
    }


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    checkpoint = save_tiny_checkpoint(workdir / "checkpoint")
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config(checkpoint)))
    first = snakemake(workdir)
    return workdir, first


def test_full_run_produces_every_stage(workflow_run):
    workdir, _ = workflow_run
    results = workdir / "results" / "tiny"
    sparsity = duckdb.sql(
        f"SELECT variant, sum(n_zero)::DOUBLE / sum(n_params) AS s FROM '{results}/*/sparsity.parquet' GROUP BY variant"
    ).fetchall()
    assert {v for v, _ in sparsity} == {"magnitude-unstructured50", "wanda-unstructured50", "sparsegpt-2of4", "wanda-4of8"}
    assert all(s == pytest.approx(0.5, abs=1e-6) for _, s in sparsity)
    scores = duckdb.sql(f"SELECT unit, count(*) FROM '{results}/layer_scores.parquet' GROUP BY unit ORDER BY unit").fetchall()
    assert scores == [("attn", 4), ("block", 4), ("mlp", 4)]
    for variant in ("drop-attn-1", "drop-mlp-2", "drop-block-1"):
        assert (results / variant / "drop_spec.json").is_file()
    assert (workdir / "logs" / "tiny" / "wanda-unstructured50" / "prune.log").is_file()
    assert (workdir / "benchmarks" / "tiny" / "wanda-unstructured50" / "prune.tsv").is_file()


def test_rerun_does_nothing(workflow_run):
    workdir, _ = workflow_run
    result = snakemake(workdir, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_config_edit_reruns_only_what_it_touches(workflow_run):
    workdir, _ = workflow_run
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["variants"] = [v if v != "drop-attn-1" else "drop-attn-2" for v in config["variants"]]
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert planned_jobs(snakemake(workdir, "--dry-run")) == {"drop_spec": 1, "all": 1}

    config["calibration"]["n_samples"] = 6  # new calibration: every calibrated product reruns, magnitude doesn't
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(workdir, "--dry-run"))
    assert jobs == {"calibration": 1, "prune": 3, "layer_scores": 1, "drop_spec": 3, "all": 1}
