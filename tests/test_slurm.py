"""The workflow through a real SLURM scheduler: profiles/slurm on a single-node cluster (scripts/slurm/up.sh).

What ran where is read from the scheduler's accounting (``sacct``), not from Snakemake's log: every
non-local rule is a SLURM job with the memory and time Snakemake asked for, group jobs bundle the
profile's grouped rules, local rules never reach the scheduler. Faults go through the scheduler too:
``scancel`` of a running job, a job killed for exceeding its memory, and Snakemake itself killed.

Run as root on Debian, the session fixture brings the cluster up and tears it down; elsewhere the tests
skip, except under CI=true, where a cluster that cannot be brought up fails them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests import slurm_cluster as slurm
from tests.test_workflow import tiny_config
from tests.tiny_checkpoint import save_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.slurm]

# Per-rule --mem (MB) and -t (minutes) for a CPU-only node of a few GB. Each rule gets its own time, so
# sacct's Timelimit shows which rule's request reached sbatch; memory is sized from the jobs' peak RSS
# (a tiny model: Snakemake plus the script's Python with torch and lm-eval, under 1 GB).
RESOURCES = {
    "calibration": (1200, 11), "probe_prompts": (1200, 12), "prune": (1500, 13), "quantize": (1500, 14),
    "layer_scores": (1500, 15), "drop_spec": (1500, 16), "probe_layerwise_drop": (1500, 17),
    "probe_layerwise_pruned": (1500, 18), "probe_generation_dense": (1500, 19), "probe_generation": (1600, 20),
    "probe_subspace": (1600, 21), "metrics_layerwise": (1300, 22), "metrics_generation": (1400, 23),
    "metrics_subspace": (1500, 24), "task_eval": (2500, 25), "probe_subspace_dense": (1600, 26),
}


def overrides(resources: dict[str, tuple[int, int]] = RESOURCES) -> list[str]:
    """What a CPU-only single node needs on top of profiles/slurm (command-line flags win over the profile;
    a flag replaces the profile's whole mapping, so every rule's resources are given)."""
    return [
        "--default-resources", f"slurm_partition={slurm.PARTITION}", "mem_mb=1000", "runtime=10", "cpus_per_task=1",
        "--set-resources", *(f"{rule}:{key}={value}" for rule, (mem, minutes) in resources.items()
                             for key, value in (("mem_mb", mem), ("runtime", minutes))),
        # The profile waits 20 s before the first status check (gentle on a shared controller); these
        # jobs take seconds.
        "--slurm-init-seconds-before-status-checks", "2",
        "--latency-wait", "10",  # one node: outputs are visible at once
    ]


def command(workdir: Path, *args: str, resources=RESOURCES) -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(workdir / "config.yaml"), "--workflow-profile", str(ROOT / "profiles" / "slurm"),
            *overrides(resources), *args]


def env() -> dict[str, str]:
    return slurm.slurm_env() | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run(workdir: Path, *args: str, check: bool = True, resources=RESOURCES) -> subprocess.CompletedProcess:
    result = subprocess.run(command(workdir, *args, resources=resources), capture_output=True, text=True, env=env(),
                            timeout=1800)
    if check:
        assert result.returncode == 0, slurm.explain(workdir, result.stdout + result.stderr)
    return result


def start(workdir: Path, *args: str, resources=RESOURCES) -> subprocess.Popen:
    """Snakemake in the background, in its own process group (so that it can be killed as a whole)."""
    return subprocess.Popen(command(workdir, *args, resources=resources), env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.fixture(scope="session")
def cluster():
    reason = slurm.unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: the SLURM tests must run, but the cluster cannot be brought up: {reason}")
        pytest.skip(reason)
    already_up = bool(shutil.which("sinfo")) and subprocess.run(
        ["sinfo"], capture_output=True, env=slurm.slurm_env()).returncode == 0
    seconds, output = slurm.bring_up()
    print(f"\nSLURM cluster up in {seconds:.1f} s:\n{output}")
    yield
    if not already_up:  # a cluster someone brought up by hand stays up
        print(slurm.tear_down())


# --- the plan: what Snakemake intends to run, from a dry run with the same flags ------------------------------------

def plan(workdir: Path, *args: str, resources=RESOURCES) -> tuple[list[slurm.Planned], list[slurm.GroupJob]]:
    return slurm.parse_plan(run(workdir, "-n", *args, resources=resources).stdout)


def expected_submissions(jobs, groups) -> dict[str, list[tuple[int, int]]]:
    """SLURM comment -> the (--mem, -t) of each submission with it: a single job carries its rule's request;
    a group job asks for the largest memory and the sum of the runtimes of its (sequential) jobs."""
    def request(rule: str) -> tuple[int, int]:
        assert rule in RESOURCES, f"rule {rule} runs on the cluster: give it --mem and -t in RESOURCES"
        return RESOURCES[rule]

    expected: dict[str, list] = {}
    for job in jobs:
        if not slurm.is_local(job.rule) and job.group is None:
            expected.setdefault(slurm.comment(job.rule, job.wildcards), []).append(request(job.rule))
    for group in groups:
        requests = [request(job.rule) for job in group.jobs]
        expected.setdefault(slurm.comment(group.job_name, []), []).append(
            (max(mem for mem, _ in requests), sum(minutes for _, minutes in requests)))
    return {key: sorted(value) for key, value in expected.items()}


def setup_workdir(workdir: Path, **changes) -> Path:
    checkpoint = save_tiny_checkpoint(workdir / "checkpoint")
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config(checkpoint) | changes))
    return workdir


# --- the whole tiny workflow ----------------------------------------------------------------------------------

# One variant of each kind (calibrated intra-layer pruning, layer dropping) beside dense: every rule of the
# tiny workflow runs, each group twice, in half the jobs of tests/test_workflow.py's six variants.
VARIANTS = ["dense", "wanda-unstructured50", "drop-attn-1"]


@pytest.fixture(scope="module")
def workflow(cluster, tmp_path_factory):
    workdir = setup_workdir(tmp_path_factory.mktemp("slurm-workflow"), variants=VARIANTS)
    jobs, groups = plan(workdir)
    started = time.perf_counter()
    result = run(workdir)
    seconds = time.perf_counter() - started
    accounted = slurm.accounting(workdir)
    print(f"\ntiny workflow under SLURM: {seconds:.0f} s wall, {len(accounted)} SLURM jobs for {len(jobs)} jobs")
    print("\n".join(job.line() for job in accounted))
    return workdir, jobs, groups, accounted, result


def test_every_cluster_rule_ran_as_a_slurm_job_with_its_resources(workflow):
    workdir, jobs, groups, accounted, _ = workflow
    why = slurm.explain(workdir)
    assert groups, "the profile groups the per-variant probe -> metrics chains"
    expected = expected_submissions(jobs, groups)
    seen: dict[str, list] = {}
    for job in accounted:
        assert job.state == "COMPLETED", why
        seen.setdefault(job.comment, []).append((job.mem_mb, job.minutes))
    # Each job once, with its rule's --mem and -t; each group once per chain; nothing else.
    assert {key: sorted(value) for key, value in seen.items()} == expected, why
    assert all(job.cpus == 1 for job in accounted), why


def test_local_rules_never_reached_the_scheduler(workflow):
    workdir, jobs, _, accounted, _ = workflow
    local = {job.rule for job in jobs if slurm.is_local(job.rule)}
    assert {"model", "task_data", "report_page"} <= local
    submitted = {job.name for job in accounted}
    assert not any(name == rule or name.startswith(f"{rule}_") for name in submitted for rule in local)
    for job in jobs:  # ... yet they ran, on the submit host
        if slurm.is_local(job.rule):
            assert all((workdir / path).exists() for path in job.outputs), job


def test_all_outputs_complete_and_a_second_run_has_nothing_to_do(workflow):
    workdir, jobs, _, accounted, _ = workflow
    missing = [path for job in jobs for path in job.outputs if not (workdir / path).exists()]
    assert not missing, missing
    assert (workdir / "results" / "report" / "index.html").stat().st_size > 10_000
    again = run(workdir)
    assert "Nothing to be done" in again.stdout + again.stderr
    assert len(slurm.accounting(workdir)) == len(accounted)  # and submitted nothing


# --- faults, each through the scheduler -----------------------------------------------------------------------------

TARGET = "results/tiny/dense/tasks/summary.parquet"


def fault_workdir(tmp_path: Path) -> Path:
    """The tiny model with the dense variant only."""
    return setup_workdir(tmp_path, variants=["dense"])


def test_cancelled_job_is_retried_and_the_run_completes(cluster, tmp_path):
    """The dense model's evaluation on two tasks (one SLURM job after the local ones), cancelled mid-way."""
    workdir = fault_workdir(tmp_path)
    log = workdir / "logs" / "tiny" / "dense" / "tasks.log"
    process = start(workdir, TARGET)
    try:
        # Cancel it mid-way: once it has loaded the model and sized its batches, with lm-eval still to run.
        running = slurm.wait_for_jobs(
            workdir, lambda jobs: any(j.state == "RUNNING" for j in jobs) and log.exists() and
            "batch sizes" in log.read_text(), timeout=300, poll=0.2, process=process)
        victim = next(j for j in running if j.state == "RUNNING")
        subprocess.run(["scancel", str(victim.job_id)], check=True, env=slurm.slurm_env())
        output, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
    jobs = slurm.accounting(workdir)
    why = slurm.explain(workdir, output)
    print(f"\nscancel of running job {victim.job_id}:\n" + "\n".join(j.line() for j in jobs))
    assert process.returncode == 0, why
    assert [(j.name, j.state) for j in jobs] == [("task_eval", "CANCELLED"), ("task_eval", "COMPLETED")], why
    assert jobs[0].job_id == victim.job_id, why
    assert (workdir / TARGET).is_file()


def output_of(jobs: list[slurm.Planned], rule: str, *wildcards: str) -> str:
    """The first output of the planned job of ``rule`` whose wildcards include ``wildcards`` (paths come
    from the workflow itself, not from this test)."""
    return next(job.outputs[0] for job in jobs if job.rule == rule and set(wildcards) <= set(job.wildcards))


def test_job_over_its_memory_limit_fails_named_while_others_go_on(cluster, tmp_path):
    """probe_prompts gets --mem 100 (its Python alone needs more): SLURM kills it, Snakemake names the rule
    and, with keep-going, still runs the independent pruning job (magnitude: no calibration data)."""
    workdir = setup_workdir(tmp_path, variants=["dense", "magnitude-4of8"])
    jobs, _ = plan(workdir)
    prompts, pruned = output_of(jobs, "probe_prompts"), output_of(jobs, "prune", "magnitude-4of8")
    starved = RESOURCES | {"probe_prompts": (100, 5)}
    result = run(workdir, "--retries", "0", prompts, pruned, check=False, resources=starved)
    output = result.stdout + result.stderr
    accounted = slurm.accounting(workdir)
    why = slurm.explain(workdir, output)
    print("\nmemory limit:\n" + "\n".join(j.line() for j in accounted))
    assert result.returncode != 0, why
    assert "Error in rule probe_prompts" in output, why
    assert sorted(j.name for j in accounted) == ["probe_prompts", "prune"], why  # no retry: --retries 0
    killed, independent = (next(j for j in accounted if j.name == name) for name in ("probe_prompts", "prune"))
    # Without cgroups SLURM samples the RSS and kills the step (state FAILED; OUT_OF_MEMORY with cgroups).
    assert killed.state in ("FAILED", "OUT_OF_MEMORY") and killed.mem_mb == 100, why
    assert "exceeded memory limit" in slurm.slurm_log(workdir, killed.job_id).read_text(), why
    assert f"SLURM log of job {killed.job_id}" in why and "exceeded memory limit" in why  # what a failure shows
    assert independent.state == "COMPLETED" and independent.mem_mb == RESOURCES["prune"][0], why
    assert (workdir / pruned).is_dir() and not (workdir / prompts).exists()


def test_killed_snakemake_restarts_without_recomputing_completed_jobs(cluster, tmp_path):
    """Snakemake dies (SIGKILL, as with a lost login node) with jobs done, one running and one still to
    come; the running SLURM job finishes on its own. Started again, Snakemake runs only what is left."""
    workdir = setup_workdir(tmp_path, variants=["dense", "magnitude-4of8"])
    # prompts and pruning, then the dense generation reference, then the variant's generation group job
    target = output_of(plan(workdir)[0], "metrics_generation", "magnitude-4of8")
    process = start(workdir, target)
    try:
        at_kill = slurm.wait_for_jobs(
            workdir, lambda jobs: sum(j.state == "COMPLETED" for j in jobs) >= 2 and
            any(j.state == "RUNNING" for j in jobs), timeout=600, poll=0.5, process=process)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    running_at_kill = [j for j in at_kill if j.state == "RUNNING"]
    # Its jobs are not its children: they run to their end under slurmd.
    before = slurm.wait_for_jobs(workdir, lambda jobs: all(j.ended for j in jobs), timeout=600)
    done_before = {j.comment for j in before if j.state == "COMPLETED"}
    # (by id: sacct shows a job's comment only once the job has ended)
    assert {j.job_id for j in running_at_kill} <= {j.job_id for j in before if j.state == "COMPLETED"}, \
        slurm.explain(workdir)
    run(workdir, "--unlock", target)  # the dead run's lock
    again = run(workdir, target)
    jobs = slurm.accounting(workdir)
    why = slurm.explain(workdir, again.stdout + again.stderr)
    print(f"\nSnakemake killed while {[j.job_id for j in running_at_kill]} ran; {len(done_before)} jobs completed "
          "before the restart:\n" + "\n".join(j.line() for j in jobs))
    later = [j for j in jobs if j.job_id > max(b.job_id for b in before)]
    assert later, why  # there was work left
    assert not {j.comment for j in later} & done_before, why  # nothing that had completed ran again
    assert all(j.state == "COMPLETED" for j in later), why
    assert (workdir / target).is_file()
    assert "Nothing to be done" in (lambda r: r.stdout + r.stderr)(run(workdir, "-n", target))
