"""The local SLURM cluster of scripts/slurm/ and what its accounting says about a workflow's jobs.

Used by tests/test_slurm.py: ``bring_up`` / ``tear_down`` call the project's scripts; ``accounting``
reads ``sacct`` (the scheduler's own record, not Snakemake's log) for the jobs submitted from one
working directory; ``explain`` renders those jobs and the SLURM logs of the ones that did not complete,
for assertion messages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "slurm"
STATE = Path(os.environ.get("PRUNESCOPE_SLURM_DIR", "/tmp/prunescope-slurm"))
SLURM_CONF = STATE / "etc" / "slurm.conf"
PARTITION = os.environ.get("PRUNESCOPE_SLURM_PARTITION", "debug")
# Rules that run on the submit host, never as SLURM jobs: localrules in rules/*.smk (report_* are all
# local), and the target rule.
LOCAL_RULES = {"all", "model", "task_data", "task_fetch"}


def is_local(rule: str) -> bool:
    return rule in LOCAL_RULES or rule.startswith("report_")


# sacct fields, in this order; -P separates them with '|', so the comment must not contain one.
FIELDS = ("JobIDRaw", "State", "Comment", "ReqMem", "TimelimitRaw", "AllocCPUS", "Elapsed", "Start", "End",
          "WorkDir", "ExitCode")


def unavailable_reason() -> str | None:
    """Why this machine cannot bring the cluster up itself, or None when it can."""
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root: scripts/slurm/up.sh installs packages and starts daemons"
    if not (shutil.which("apt-get") and shutil.which("dpkg-query")):
        return "needs Debian's apt-get: scripts/slurm/up.sh installs slurm-wlm, munge, slurmdbd, MariaDB"
    return None


def bring_up() -> tuple[float, str]:
    """Run up.sh; returns (seconds, its output). Raises with the script's output when it fails."""
    started = time.perf_counter()
    result = subprocess.run(["bash", str(SCRIPTS / "up.sh")], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/slurm/up.sh failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - started, result.stdout


def tear_down() -> str:
    result = subprocess.run(["bash", str(SCRIPTS / "down.sh")], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/slurm/down.sh failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def slurm_env() -> dict[str, str]:
    """The environment of the SLURM clients (and of Snakemake, which calls them)."""
    return {**os.environ, "SLURM_CONF": str(SLURM_CONF)}


@dataclass(frozen=True)
class Job:
    """One SLURM allocation as sacct records it."""

    job_id: int
    state: str
    comment: str  # the plugin's rule_<rule or group job name>[_wildcards_<values joined by _>]
    mem_mb: int
    minutes: int
    cpus: int
    elapsed: str
    start: str
    end: str
    workdir: str
    exit_code: str

    @property
    def name(self) -> str:
        """The rule (or group job) name the plugin put into the comment."""
        return self.comment.removeprefix("rule_").split("_wildcards_")[0]

    @property
    def wildcards(self) -> str:
        return self.comment.split("_wildcards_", 1)[1] if "_wildcards_" in self.comment else ""

    @property
    def ended(self) -> bool:
        return self.state not in ("PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED")

    def line(self) -> str:
        return (f"{self.job_id:>5} {self.comment:<62} {self.state:<13} mem={self.mem_mb}M time={self.minutes}min "
                f"cpus={self.cpus} elapsed={self.elapsed} exit={self.exit_code}")


def _mem_mb(text: str) -> int:
    """sacct's ReqMem ('2000M', '2G', '1000Mc' in older versions) in MB."""
    value = text.rstrip("nc")
    scale = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    return round(float(value[:-1]) * scale[value[-1]]) if value and value[-1] in scale else int(value or 0)


def accounting(workdir: Path) -> list[Job]:
    """Every job submitted with ``-D workdir`` (the plugin passes the workflow's directory), oldest first."""
    result = subprocess.run(
        ["sacct", "-X", "-P", "-n", "-S", "now-1days", "-E", "now", "-o", ",".join(FIELDS)],
        capture_output=True, text=True, env=slurm_env(), timeout=60, check=True)
    jobs = []
    for row in result.stdout.splitlines():
        values = dict(zip(FIELDS, row.split("|")))
        if Path(values["WorkDir"]).resolve() != Path(workdir).resolve():
            continue
        jobs.append(Job(int(values["JobIDRaw"]), values["State"].split()[0], values["Comment"],
                        _mem_mb(values["ReqMem"]), int(values["TimelimitRaw"] or 0), int(values["AllocCPUS"] or 0),
                        values["Elapsed"], values["Start"], values["End"], values["WorkDir"], values["ExitCode"]))
    return sorted(jobs, key=lambda job: job.job_id)


def slurm_log(workdir: Path, job_id: int) -> Path | None:
    """The plugin's log of one job: .snakemake/slurm_logs/{rule_X|group_X}/{wildcards}/{id}.log."""
    found = sorted((Path(workdir) / ".snakemake" / "slurm_logs").glob(f"**/{job_id}.log"))
    return found[0] if found else None


def explain(workdir: Path, output: str = "") -> str:
    """sacct's lines for the workdir, the SLURM log of every job that did not complete, and the tail of
    Snakemake's own output: what a failed assertion shows."""
    try:
        jobs = accounting(workdir)
    except (subprocess.SubprocessError, OSError) as err:
        return f"sacct failed: {err}\n{output[-6000:]}"
    parts = ["sacct:", *(job.line() for job in jobs)]
    for job in jobs:
        if job.state != "COMPLETED":
            log = slurm_log(workdir, job.job_id)
            text = log.read_text(errors="replace")[-4000:] if log else "(no SLURM log file)"
            parts += [f"--- SLURM log of job {job.job_id} ({job.comment}, {job.state}): {log}", text]
    if output:
        parts += ["--- Snakemake output (tail)", output[-6000:]]
    return "\n".join(parts)


def wait_for_jobs(workdir: Path, predicate, timeout: float, poll: float = 1.0,
                  process: subprocess.Popen | None = None) -> list[Job]:
    """Poll sacct until ``predicate(jobs)`` holds; returns the jobs. Fails with the accounting (and the
    output of ``process``, the Snakemake run that submits them, if it ended first) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = accounting(workdir)
        if predicate(jobs):
            return jobs
        if process is not None and process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"Snakemake ended ({process.returncode}) before the awaited SLURM state\n"
                                 f"{explain(workdir, output)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for SLURM jobs\n{explain(workdir)}")
        time.sleep(poll)


# --- a dry run's plan -------------------------------------------------------------------------------------------

@dataclass
class Planned:
    """One job of a dry run."""

    rule: str
    wildcards: list[str]  # values, in the rule's order (as the plugin joins them into the comment)
    outputs: list[str]
    group: str | None


@dataclass
class GroupJob:
    """The jobs one group job (one sbatch) runs."""

    group: str
    jobs: list[Planned] = field(default_factory=list)

    @property
    def job_name(self) -> str:
        """Snakemake's name for it: the group, then its rules in order (what the plugin puts in --comment)."""
        return "_".join([self.group, *sorted({job.rule for job in self.jobs})])


def parse_plan(text: str) -> tuple[list[Planned], list[GroupJob]]:
    """Every job of ``snakemake -n`` output, and its group jobs ('Group job NAME (jobs in lexicogr. order):'
    followed by the member jobs, indented)."""
    jobs, groups, group, job = [], [], None, None
    for line in text.splitlines():
        if header := re.match(r"(?:\[.*?\] )?Group job (\w+) \(jobs", line):
            group = GroupJob(header.group(1))
            groups.append(group)
        elif rule := re.match(r"( *)(?:local)?rule (\w+):$", line):
            if not rule.group(1):  # a job at the top level ends the group's listing
                group = None
            job = Planned(rule.group(2), [], [], group.group if group else None)
            jobs.append(job)
            if group:
                group.jobs.append(job)
        elif job and (item := re.match(r"\s+(output|wildcards): (.*)$", line)):
            values = item.group(2).split(", ")
            if item.group(1) == "output":
                job.outputs = values
            else:
                job.wildcards = [value.split("=", 1)[1] for value in values]
    if not jobs and "Nothing to be done" not in text:
        raise ValueError(f"no jobs in this dry run:\n{text[-3000:]}")
    return jobs, groups


def comment(name: str, wildcards: list[str]) -> str:
    """The --comment snakemake-executor-plugin-slurm gives a job of rule (or group job) ``name``."""
    return f"rule_{name}_wildcards_{'_'.join(wildcards)}" if wildcards else f"rule_{name}"
