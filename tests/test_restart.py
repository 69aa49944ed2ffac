"""Preemption and power loss: a job killed mid-way (SIGKILL) is never taken for done.

- Only the job dies (a preempted or failed cluster job): Snakemake removes what it left and retries it
  (the slurm profile sets ``retries: 2``).
- Everything dies (the workstation loses power): after ``--unlock``, what the dead job left is refused as
  incomplete, and the next ordinary run (profiles set ``rerun-incomplete``) redoes it cleanly.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.tiny_checkpoint import save_tiny_checkpoint
from tests.test_workflow import snakemake, tiny_config

ROOT = Path(__file__).resolve().parents[1]
TARGET = "results/tiny/dense/tasks/summary.parquet"

pytestmark = pytest.mark.slow


def start(workdir: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(workdir / "config.yaml"), "--cores", "1", *args, TARGET]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: the job dies with it


def setup(workdir: Path) -> Path:
    """A tiny model evaluated on two tasks; returns the evaluation job's log file."""
    checkpoint = save_tiny_checkpoint(workdir / "checkpoint")
    config = tiny_config(checkpoint) | {"variants": ["dense"]}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir / "logs" / "tiny" / "dense" / "tasks.log"


def job_pids(session: int, script: str) -> list[int]:
    """Processes of ``session`` running the workflow script ``script`` (Snakemake copies it to a temp name)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.getsid(int(entry.name)) == session and \
                    script in (entry / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return pids


def check_summary(workdir: Path) -> None:
    summary = duckdb.sql(f"SELECT DISTINCT task FROM '{workdir / TARGET}' ORDER BY 1").fetchall()
    assert summary == [("basic_skills_arithmetic_gen",), ("piqa",)]


def wait_for(predicate, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, "snakemake ended before the job could be killed"
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)


def test_killed_job_is_retried(tmp_path):
    log = setup(tmp_path)
    process = start(tmp_path, "--retries", "1")
    # Kill the job once it has set up and sized its batches: model loading and lm-eval remain.
    wait_for(lambda: log.exists() and "batch sizes" in log.read_text(), process)
    pids = job_pids(process.pid, "task_eval")
    assert pids, "no task_eval process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-4000:]
    assert "Error in rule task_eval" in output and "Trying to restart job" in output, output[-4000:]
    check_summary(tmp_path)


def test_killed_run_is_redone_not_trusted(tmp_path):
    log = setup(tmp_path)
    process = start(tmp_path)
    wait_for(lambda: log.exists() and "batch sizes" in log.read_text(), process)
    os.killpg(process.pid, signal.SIGKILL)  # Snakemake and its job at once
    process.wait(timeout=60)
    snakemake(tmp_path, "--unlock")  # the dead run's lock; Snakemake asks for this itself
    outputs = [p for p in (tmp_path / "results" / "tiny" / "dense" / "tasks").glob("*") if not p.name.startswith(".")]

    # Without rerun-incomplete, Snakemake refuses to use what the dead job left, or plans the job again.
    plan = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(tmp_path / "config.yaml"), "--workflow-profile", "none", "--cores", "1", TARGET],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    text = plan.stdout + plan.stderr
    assert "Nothing to be done" not in text
    if outputs:
        assert plan.returncode != 0 and "incomplete" in text.lower(), (outputs, text[-3000:])
    else:
        assert plan.returncode == 0 and "task_eval" in text

    # The next ordinary run (the default profile has rerun-incomplete) redoes the job and completes.
    snakemake(tmp_path, TARGET)
    check_summary(tmp_path)
    assert "Nothing to be done" in (lambda r: r.stdout + r.stderr)(snakemake(tmp_path, "-n", TARGET))
