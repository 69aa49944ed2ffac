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
        "variants": ["dense", "magnitude-4of8", "wanda-unstructured50", "sparsegpt-2of4", "drop-attn-1", "drop-block-1",
                     "quant-gptq-w4g32"],
        "device": "cpu",
        "calibration": {"dataset": "embedded", "n_samples": 4, "seqlen": 32, "seed": 0},
        "pruning": {"batch_size": "auto"},  # sized from the rules' declared mem_mb
        "dropping": {"batch_size": "auto"},
        "probes": {"temperature": 1.0, "seed": 1, "max_new_tokens": 5,
                   "sets": {"mc": {"kind": "multiple_choice", "n": 2}, "math": {"kind": "math", "n": 1}}},
        "metrics": {"temperatures": [0.5, 1.0]},
        "tasks": {"batch_size": "auto", "benchmarks": [
            {"name": "piqa", "kind": "multiple_choice", "limit": 3},
            {"name": "basic_skills_arithmetic_gen", "kind": "generative", "limit": 3, "shots": 2},
        ]},
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
    assert {v for v, _ in sparsity} == {"magnitude-4of8", "wanda-unstructured50", "sparsegpt-2of4"}
    assert all(s == pytest.approx(0.5, abs=1e-6) for _, s in sparsity)
    scores = duckdb.sql(f"SELECT unit, count(*) FROM '{results}/layer_scores.parquet' GROUP BY unit ORDER BY unit").fetchall()
    assert scores == [("attn", 4), ("block", 4), ("mlp", 4)]
    for variant in ("drop-attn-1", "drop-block-1"):
        assert (results / variant / "drop_spec.json").is_file()
    probes = duckdb.sql(
        f"SELECT probe, variant, mode, count(*) FROM '{results}/*/probes/*.parquet' "
        "GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    combos = {(p, v, m) for p, v, m, _ in probes}
    assert ("layerwise", "dense", "drop") in combos and ("layerwise", "wanda-unstructured50", "pruned") in combos
    assert ("generation", "dense", "reference") in combos and ("generation", "drop-attn-1", "forced") in combos
    assert ("subspace", "sparsegpt-2of4", "forward") in combos
    assert ("layerwise", "quant-gptq-w4g32", "pruned") in combos and ("generation", "quant-gptq-w4g32", "free") in combos
    # The quantised variant: a stock checkpoint whose every decoder linear has 4-bit groups of 32.
    quant = duckdb.sql(f"SELECT DISTINCT bits, group_size, method FROM '{results}/quant-gptq-w4g32/quantization.parquet'"
                       ).fetchall()
    assert quant == [(4, 32, "gptq")]
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(results / "quant-gptq-w4g32" / "model").config.num_hidden_layers == 4
    # Layer-wise rows: prompts x steps x 4 layers x 2 sublayers; metrics: one value per row, space, T and metric.
    kl = duckdb.sql(
        f"SELECT count(*), min(value) FROM '{results}/*/metrics/layerwise-*.parquet' "
        "WHERE space = 'probability' AND metric = 'kl' AND temperature = 1.0"
    ).fetchall()[0]
    n_layerwise = duckdb.sql(f"SELECT count(*) FROM '{results}/*/probes/layerwise-*.parquet'").fetchall()[0][0]
    assert kl[0] == n_layerwise and kl[1] >= 0
    temperatures = duckdb.sql(
        f"SELECT DISTINCT temperature FROM '{results}/*/metrics/*.parquet' WHERE space = 'probability' ORDER BY 1"
    ).fetchall()
    # Each configured temperature, and null for the T-independent probability metrics, stored once (issue 14).
    assert temperatures == [(0.5,), (1.0,), (None,)]
    free = duckdb.sql(
        f"SELECT DISTINCT metric FROM '{results}/*/metrics/*.parquet' WHERE space = 'probability' "
        "AND temperature IS NULL ORDER BY 1"
    ).fetchall()
    assert free == [("rms_dz",), ("top1_agree",), ("var_uniform",)]
    assert (workdir / "logs" / "tiny" / "wanda-unstructured50" / "prune.log").is_file()
    tasks = duckdb.sql(f"SELECT DISTINCT variant FROM '{results}/*/tasks/summary.parquet'").fetchall()
    assert len(tasks) == 7
    assert (workdir / "results" / "report" / "index.html").stat().st_size > 10_000
    assert (workdir / "benchmarks" / "tiny" / "wanda-unstructured50" / "prune.tsv").is_file()


def test_auto_batch_sizes_reach_the_jobs(workflow_run):
    """batch_size: auto becomes a number from the rule's mem_mb (a tiny model: the cap) and is recorded."""
    from prunescope.batching import MAX_AUTO_BATCH
    from prunescope.io import read_settings

    workdir, _ = workflow_run
    results = workdir / "results" / "tiny"
    assert read_settings(results / "wanda-unstructured50" / "sparsity.parquet")["pruning"]["batch_size"] == MAX_AUTO_BATCH
    assert read_settings(results / "layer_scores.parquet")["batch_size"] == MAX_AUTO_BATCH
    log = (workdir / "logs" / "tiny" / "dense" / "tasks.log").read_text()
    assert re.search(rf"batch sizes: lm-eval \d+ \(tasks.batch_size: auto\)", log), log[-2000:]


def test_rerun_does_nothing(workflow_run):
    workdir, _ = workflow_run
    result = snakemake(workdir, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def reversed_keys(value):
    """The same config with every mapping's keys in reverse order (lists unchanged)."""
    if isinstance(value, dict):
        return {key: reversed_keys(value[key]) for key in reversed(list(value))}
    return [reversed_keys(item) for item in value] if isinstance(value, list) else value


def planned_after(workdir: Path, config: dict) -> dict[str, int]:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return planned_jobs(snakemake(workdir, "--dry-run"))


def test_edits_that_change_no_result_rerun_nothing(workflow_run):
    """Params carry only what changes a result, in canonical form: key order, chunk and batch sizes of
    batch-independent stages plan no job; final_norm replans only the layer-wise metrics (and the report)."""
    workdir, _ = workflow_run
    original = (workdir / "config.yaml").read_text()
    config = yaml.safe_load(original)
    try:
        assert planned_after(workdir, reversed_keys(config)) == {}
        assert planned_after(workdir, {**config, "metrics": {**config["metrics"], "chunk_rows": 7}}) == {}
        assert planned_after(workdir, {**config, "probes": {**config["probes"], "batch_size": 3}}) == {}
        jobs = planned_after(workdir, {**config, "metrics": {**config["metrics"], "final_norm": True}})
        assert {rule: n for rule, n in jobs.items() if not rule.startswith("report")} == {
            "metrics_layerwise": 1 + 4, "all": 1}  # dense (drop mode) + three intra-layer + one quantised
    finally:
        (workdir / "config.yaml").write_text(original)


def test_config_edit_reruns_only_what_it_touches(workflow_run):
    workdir, _ = workflow_run
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["variants"] = [v if v != "drop-attn-1" else "drop-attn-2" for v in config["variants"]]
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(workdir, "--dry-run"))
    # A new k: its spec and its own downstream jobs, never the scoring pass or anything of other variants.
    assert {rule: n for rule, n in jobs.items() if not rule.startswith("report")} == {
        "drop_spec": 1, "probe_generation": 1, "probe_subspace": 1, "metrics_generation": 1, "metrics_subspace": 1,
        "task_eval": 1, "all": 1}

    config["metrics"]["temperatures"] = [1.0]  # only the metrics stage reads the temperatures
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(workdir, "--dry-run"))
    assert {rule for rule in jobs if not rule.startswith("report")} - {
        "all", "drop_spec", "probe_generation", "probe_subspace", "task_eval"} == {
        "metrics_layerwise", "metrics_generation", "metrics_subspace"}

    config["calibration"]["n_samples"] = 6  # new calibration: every calibrated product reruns, magnitude doesn't
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(workdir, "--dry-run"))
    assert jobs["calibration"] == 1 and jobs["prune"] == 2 and jobs["layer_scores"] == 1 and jobs["drop_spec"] == 2
    assert not {"probe_layerwise_drop", "probe_generation_dense", "probe_subspace_dense"} & set(jobs)  # dense-only work stays
