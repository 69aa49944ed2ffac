"""Paper-scale config and SLURM profile: the full DAG plans here, and GPU rules map to sbatch options."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from prunescope.variants import parse_variant
from tests.slurm_cluster import is_local, parse_plan
from tests.test_workflow import planned_jobs

ROOT = Path(__file__).resolve().parents[1]


OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def dry_run(*args: str, online: bool = False, check: bool = True) -> subprocess.CompletedProcess:
    """``snakemake -n``; ``online``: as on a submit host with internet (nothing is downloaded by a dry run,
    but hub task names are then looked up in lm-eval's index instead of being refused)."""
    env = {k: v for k, v in os.environ.items() if not (online and k in OFFLINE)}
    if not online:
        env |= dict.fromkeys(OFFLINE, "1")
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"), *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=env)
    if check:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory):
    started = time.perf_counter()  # in an empty working directory: nothing of the default run counts as done
    plan = dry_run("--configfile", "config/paper.yaml", "--directory", str(tmp_path_factory.mktemp("paper")),
                   "--workflow-profile", str(ROOT / "profiles" / "slurm"), online=True)
    print(f"paper dry run: {time.perf_counter() - started:.1f} s")
    return plan


def test_paper_dag_has_the_expected_jobs(paper_plan):
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    specs = [parse_variant(v) for v in config["variants"]]
    n_models = len(config["models"])
    intra = sum(s.kind == "prune" for s in specs)
    drops = sum(s.kind == "drop" for s in specs)
    non_dense = intra + drops
    has_mc = any(s["kind"] == "multiple_choice" for s in config["probes"]["sets"].values())
    per_model = {
        "model": 1, "calibration": 1, "prune": intra, "layer_scores": 1, "drop_spec": drops,
        "probe_prompts": 1, "probe_layerwise_drop": 1, "probe_layerwise_pruned": intra,
        "probe_generation_dense": 1, "probe_generation": non_dense, "probe_subspace": non_dense * has_mc,
        "probe_subspace_dense": has_mc, "metrics_layerwise": 1 + intra, "metrics_generation": non_dense, "metrics_subspace": non_dense * has_mc,
        "task_eval": 1 + non_dense,
    }
    jobs = planned_jobs(paper_plan)
    for rule, count in per_model.items():
        assert jobs.get(rule) == count * n_models, rule
    assert (n_models, intra, drops) == (3, 9, 36)
    # Shared by the models: one download per hub task, one conversion per snapshot task.
    benchmarks = config["tasks"]["benchmarks"]
    assert jobs.get("task_fetch") == sum(b["kind"] != "retrieval" for b in benchmarks) == 13
    assert jobs.get("task_data") == 1  # squad_retrieval, prunescope's own task


def test_slurm_profile_runs_each_variants_probe_and_metrics_as_one_job(paper_plan):
    """Fewer, larger jobs: the profile groups a variant's subspace probe with its metrics, and its generation
    probe with its metrics, so each chain is one sbatch (the dry run lists every 'Group job NAME' with its
    jobs); the test prints the paper config's submissions with and without grouping."""
    jobs, groups = parse_plan(paper_plan.stdout)
    counts = planned_jobs(paper_plan)
    cluster_jobs = [job for job in jobs if not is_local(job.rule)]
    submissions = len(cluster_jobs) - sum(job.group is not None for job in jobs) + len(groups)
    print(f"paper config, profiles/slurm: {len(jobs)} jobs, {len(cluster_jobs)} for the cluster; "
          f"{submissions} sbatch submissions with grouping ({len(groups)} group jobs), {len(cluster_jobs)} without")
    members = {"subspace": ["metrics_subspace", "probe_subspace"], "generation": ["metrics_generation", "probe_generation"]}
    for group in groups:
        assert sorted(job.rule for job in group.jobs) == members[group.group], group
        assert len({tuple(job.wildcards) for job in group.jobs}) == 1, group  # one variant's chain
    assert sum(g.group == "subspace" for g in groups) == counts["probe_subspace"] == counts["metrics_subspace"]
    assert sum(g.group == "generation" for g in groups) == counts["probe_generation"] == counts["metrics_generation"]
    assert submissions == len(cluster_jobs) - counts["probe_subspace"] - counts["probe_generation"]
    assert not any(job.group for job in jobs if job.rule not in members["subspace"] + members["generation"])


def test_paper_tasks_are_the_papers_with_its_shot_counts():
    tasks = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["tasks"]
    assert tasks["source"] == "hub"
    shots = {b["name"]: b["shots"] for b in tasks["benchmarks"]}
    # NOTES §3 (the LLM-Drop script the paper's code inherits) and §4 ("MBPP (3-shot)")
    assert shots == {"hellaswag": 10, "mmlu": 5, "boolq": 0, "arc_challenge": 25, "openbookqa": 0, "winogrande": 5,
                     "rte": 0, "piqa": 0, "gsm8k": 5, "humaneval": 0, "mbpp": 3, "nq_open": 0,
                     "scrolls_narrativeqa": 0, "squad_retrieval": 0}


def test_hub_tasks_offline_need_fetched_data(tmp_path):
    """Offline (a compute node) the paper config is refused until its hub tasks were fetched; once their
    manifests exist the same config plans, and no task is fetched again."""
    refused = dry_run("--configfile", "config/paper.yaml", "--directory", str(tmp_path), check=False)
    assert refused.returncode != 0
    message = refused.stdout + refused.stderr
    assert "tasks.benchmarks[0] ('hellaswag')" in message and "task_fetch" in message and "HF_HUB_OFFLINE" in message
    tasks = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())["tasks"]["benchmarks"]
    hub = tmp_path / "resources" / "benchmarks" / "hub"
    hub.mkdir(parents=True)
    for entry in tasks:
        if entry["kind"] != "retrieval":
            (hub / f"{entry['name']}.json").write_text(json.dumps({"task": entry["name"], "kind": entry["kind"]}))
    plan = dry_run("--configfile", "config/paper.yaml", "--directory", str(tmp_path))
    jobs = planned_jobs(plan)
    assert "task_fetch" not in jobs and jobs["task_eval"] == 3 * 46


def test_paper_models_come_from_the_hub_pinned():
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    for name, entry in config["models"].items():
        assert entry["source"] == "hub" and re.fullmatch(r"[0-9a-f]{40}", entry["revision"]), name
        assert entry["dtype"] == "bfloat16"


def job_resources(plan: subprocess.CompletedProcess, rule: str) -> dict:
    """The resources Snakemake resolved for the first job of ``rule`` in a dry run (a group job lists its
    jobs indented)."""
    block = re.search(rf"^ *(?:local)?rule {rule}:\n(.*?)\n\n", plan.stdout, re.S | re.M)
    assert block, f"no job of rule {rule}"
    line = re.search(r"resources: (.*)", block.group(1)).group(1)
    resources = {}
    for item in line.split(", "):
        key, value = item.split("=", 1)
        resources[key] = int(value) if value.isdigit() else value
    return resources


class Resources(dict):
    """Attribute and .get access, as the slurm plugin reads a job's resources."""

    __getattr__ = dict.__getitem__


def sbatch_call(resources: dict) -> str:
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    job = SimpleNamespace(resources=Resources(resources), threads=1)
    params = {"run_uuid": "test", "slurm_logfile": "log", "comment_str": "c", "account": "",
              "partition": f"-p {resources['slurm_partition']}", "workdir": "."}
    return get_submit_command(job, params) + set_gres_string(job)


def test_slurm_profile_maps_gpu_rules_to_sbatch():
    plan = dry_run("--configfile", "config/smoke-gpu.yaml", "--workflow-profile", "profiles/slurm")
    prune = job_resources(plan, "prune")
    call = sbatch_call(prune)
    for option in ("-p gpu", "--mem 160000", "-t 360", "--gpus=1"):
        assert option in call, (option, call)
    assert prune["gpu_mem_mb"] == 80000 and "80000" not in call  # sizes batch_size: auto; not an sbatch option
    calibration = job_resources(plan, "calibration")
    assert calibration["gpu"] == 0 and "--gpus" not in sbatch_call(calibration)



GPU_RULES = ("prune", "layer_scores", "probe_layerwise_drop", "probe_layerwise_pruned", "probe_generation_dense",
             "probe_generation", "probe_subspace_dense", "probe_subspace", "metrics_layerwise", "metrics_generation", "metrics_subspace",
             "task_eval")


def test_paper_jobs_get_7b_sized_resources_under_the_slurm_profile(paper_plan):
    """Rules declare workstation-sized memory; the profile must raise it for 7-8B models (bf16 ~16 GB)."""
    for rule in GPU_RULES:
        resources = job_resources(paper_plan, rule)
        assert resources["gpu"] == 1 and resources["gpu_mem_mb"] == 80000, rule
        assert resources["mem_mb"] >= 32000 and resources["runtime"] >= 120, (rule, resources)
        assert f"--mem {resources['mem_mb']}" in sbatch_call(resources), rule
    assert job_resources(paper_plan, "prune")["mem_mb"] >= 2 * 16000  # the whole bf16 model in host memory


def test_downloads_and_report_are_local_rules():
    """Hub downloads need the internet, which compute nodes often lack; the report is seconds of work.
    (A dry run does not mark local jobs under the slurm profile, so the declarations are read here.)"""
    declared = " ".join(re.findall(r"^localrules:\n((?:    \w+,\n)+)", "\n".join(
        p.read_text() for p in (ROOT / "rules").glob("*.smk")), re.M))
    for rule in ("model", "task_data", "task_fetch", "report_page"):
        assert f"{rule}," in declared, rule
