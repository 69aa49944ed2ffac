"""Paper-scale config and SLURM profile: the full DAG plans here, and GPU rules map to sbatch options."""

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from prunescope.variants import parse_variant
from tests.test_workflow import planned_jobs

ROOT = Path(__file__).resolve().parents[1]


def dry_run(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def paper_plan():
    return dry_run("--configfile", "config/paper.yaml")


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
        "metrics_layerwise": 1 + intra, "metrics_generation": non_dense, "metrics_subspace": non_dense * has_mc,
    }
    jobs = planned_jobs(paper_plan)
    for rule, count in per_model.items():
        assert jobs.get(rule) == count * n_models, rule
    assert (n_models, intra, drops) == (3, 9, 36)


def test_paper_models_come_from_the_hub_pinned():
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    for name, entry in config["models"].items():
        assert entry["source"] == "hub" and re.fullmatch(r"[0-9a-f]{40}", entry["revision"]), name
        assert entry["dtype"] == "bfloat16"


def job_resources(plan: subprocess.CompletedProcess, rule: str) -> dict:
    """The resources Snakemake resolved for the first job of ``rule`` in a dry run."""
    block = re.search(rf"^(?:local)?rule {rule}:\n(.*?)\n\n", plan.stdout, re.S | re.M)
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
    calibration = job_resources(plan, "calibration")
    assert calibration["gpu"] == 0 and "--gpus" not in sbatch_call(calibration)



def test_downloads_and_report_are_local_rules():
    """Hub downloads need the internet, which compute nodes often lack; the report is seconds of work.
    (A dry run does not mark local jobs under the slurm profile, so the declarations are read here.)"""
    declared = " ".join(re.findall(r"^localrules:\n((?:    \w+,\n)+)", "\n".join(
        p.read_text() for p in (ROOT / "rules").glob("*.smk")), re.M))
    for rule in ("model", "task_data", "report_page"):
        assert f"{rule}," in declared, rule
