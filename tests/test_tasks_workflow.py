"""Integration: the tasks rules run by Snakemake on a tiny checkpoint (dense, an intra-layer and a drop variant)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.tiny_checkpoint import save_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["dense", "magnitude-unstructured50", "drop-block-1"]

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str) -> str:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args,
               *[f"results/tiny/{variant}/tasks/summary.parquet" for variant in VARIANTS]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    return result.stdout + result.stderr


def test_task_rules_end_to_end(tmp_path):
    config = {
        "models": {"tiny": {"source": "path", "path": str(save_tiny_checkpoint(tmp_path / "checkpoint")),
                            "dtype": "float32"}},
        "variants": VARIANTS, "device": "cpu",
        "calibration": {"dataset": "embedded", "n_samples": 4, "seqlen": 32, "seed": 0},
        "tasks": {"benchmarks": [
            {"name": "piqa", "kind": "multiple_choice", "limit": 3},
            {"name": "basic_skills_arithmetic_gen", "kind": "generative", "limit": 3, "shots": 2},
            {"name": "squad_retrieval", "kind": "retrieval", "limit": 4},
        ]},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path)
    summary = duckdb.sql(f"SELECT variant, task, metric, filter, n FROM '{tmp_path}/results/tiny/*/tasks/summary.parquet'"
                         ).fetchall()
    assert {v for v, *_ in summary} == set(VARIANTS)
    assert ("dense", "basic_skills_arithmetic_gen", "gold_loglik", "none", 3) in summary
    assert ("drop-block-1", "squad_retrieval", "ndcg@10", "mean", 4) in summary
    for variant in VARIANTS:
        folder = tmp_path / "results" / "tiny" / variant / "tasks"
        assert {p.name for p in folder.iterdir()} == {"piqa.parquet", "basic_skills_arithmetic_gen.parquet",
                                                      "squad_retrieval.parquet", "summary.parquet", "lm_eval.json",
                                                      "lm_eval_samples.jsonl.gz"}
        assert (tmp_path / "logs" / "tiny" / variant / "tasks.log").is_file()
    assert (tmp_path / "resources" / "benchmarks" / "piqa.parquet").is_file()
    # A changed limit reruns the evaluations, never the data conversion.
    assert "Nothing to be done" in snakemake(tmp_path, "--dry-run")
    config["tasks"]["benchmarks"][0]["limit"] = 2
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert planned_jobs(snakemake(tmp_path, "--dry-run")) == {"task_eval": 3}


def planned_jobs(text: str) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table."""
    table = text.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
