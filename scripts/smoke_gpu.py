#!/usr/bin/env python
"""GPU smoke check: run the whole workflow once on config/smoke-gpu.yaml and print what each stage cost.

One prepared command for a GPU machine with no network (after ``make setup``)::

    .venv/bin/python scripts/smoke_gpu.py                     # work dir smoke-run/, timeout 480 s

It prints the environment (torch, CUDA device, GPU memory), runs
``snakemake --cores all --configfile config/smoke-gpu.yaml --directory smoke-run`` with the repository's
Snakefile, then prints one row per rule: jobs, total / max wall seconds (from the ``benchmarks/**/*.tsv``
files, else the job's own ``JOB_STATS`` log line, else Snakemake's start / finish stamps), peak RSS, peak
GPU memory (allocated / reserved, from the ``JOB_STATS`` lines of ``prunescope.runlog``) and the probes'
tokens per second (their ``PROBE_THROUGHPUT`` lines). Exit status: 0 when Snakemake succeeded; otherwise
Snakemake's (124 on the overall timeout), after the tail of each failed job's log.

On a CPU, shrink the model: ``--configfile my-small.yaml`` and/or ``--config device=cpu ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # prunescope, also when not pip-installed

from prunescope.runlog import JOB_STATS, PROBE_THROUGHPUT, parse_log_lines  # noqa: E402

MARKER = ".prunescope-smoke"  # a work dir holding this file may be wiped by the next run
SNAKEMAKE_OUT = "smoke-snakemake.out"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

ENV_PROBE = r"""
import json, os, platform, sys
facts = {"python": platform.python_version(), "cpus": os.cpu_count()}
try:
    with open("/proc/meminfo") as f:
        facts["ram_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
except OSError:
    pass
import torch
facts.update(torch=torch.__version__, cuda_build=torch.version.cuda, cuda_available=torch.cuda.is_available())
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info(0)
    facts.update(gpu_count=torch.cuda.device_count(), gpu=props.name, gpu_memory_gb=round(total / 2**30, 1),
                 gpu_free_gb=round(free / 2**30, 1), capability=f"{props.major}.{props.minor}",
                 bf16=torch.cuda.is_bf16_supported())
for name in ("transformers", "snakemake", "lm_eval"):
    try:
        facts[name] = __import__(name).__version__
    except Exception as err:
        facts[name] = f"unavailable ({type(err).__name__})"
print(json.dumps(facts))
"""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = {**OFFLINE, **os.environ} if not args.online else dict(os.environ)
    # The jobs import prunescope from this checkout also where it is not pip-installed (a bare GPU machine).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    print("== environment")
    facts = environment_facts(env)
    for key, value in facts.items():
        print(f"  {key}: {value}")

    workdir = prepare_workdir(Path(args.workdir), args.resume)
    command = snakemake_command(args, workdir)
    print(f"== snakemake (timeout {args.timeout:g} s; output in {workdir / SNAKEMAKE_OUT})")
    print("  " + " ".join(command))
    sys.stdout.flush()
    started = time.monotonic()
    rc = run_snakemake(command, workdir / SNAKEMAKE_OUT, env, args.timeout)
    elapsed = time.monotonic() - started

    snakemake_text = (workdir / SNAKEMAKE_OUT).read_text(errors="replace")
    jobs = collect_jobs(workdir, snakemake_text)
    rules = rule_table(jobs)
    probes = probe_table(jobs)
    status = "ok" if rc == 0 else ("timeout" if rc == 124 else f"failed (exit {rc})")
    print(f"== per rule ({len(jobs)} jobs, snakemake {status} after {elapsed:.1f} s)")
    print(format_rule_table(rules))
    if probes:
        print("== probe throughput (tokens/s: new tokens for decoding probes, prompt tokens for subspace)")
        print(format_probe_table(probes))
    gpu_peaks = [job["gpu_max_allocated_mb"] for job in jobs if job.get("gpu_max_allocated_mb") is not None]
    devices = sorted({job["device"] for job in jobs if job.get("device")})
    print(f"== summary: status {status}; wall {elapsed:.1f} s; jobs {len(jobs)}; "
          f"cuda jobs {len(gpu_peaks)} on {', '.join(devices) or 'no GPU'}; "
          f"peak GPU allocated {max(gpu_peaks, default=0):.0f} MB")
    if rc != 0:
        print_failures(workdir, snakemake_text, jobs, rc)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "status": status, "returncode": rc, "wall_s": round(elapsed, 2), "environment": facts,
            "command": command, "rules": rules, "probes": probes, "jobs": jobs,
        }, indent=1, default=str))
        print(f"== wrote {args.json}")
    return rc


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(REPO / "smoke-run"),
                        help="Snakemake working directory (default: smoke-run/ in the repository, git-ignored); "
                             "wiped first when it holds a previous smoke run, unless --resume")
    parser.add_argument("--configfile", default=str(REPO / "config" / "smoke-gpu.yaml"))
    parser.add_argument("--config", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="Snakemake --config overrides (YAML values), e.g. device=cpu")
    parser.add_argument("--cores", default="all")
    parser.add_argument("--gpu-jobs", type=int, default=4,
                        help="GPU jobs at once on the one GPU (--resources gpu=N; each 7B-shape job peaks at "
                             "roughly 10-20 GB)")
    parser.add_argument("--timeout", type=float, default=480.0,
                        help="seconds before Snakemake is stopped (the table then shows the jobs that ran)")
    parser.add_argument("--json", help="also write the environment, the tables and every job as JSON here")
    parser.add_argument("--resume", action="store_true", help="keep the work dir: Snakemake runs what is missing")
    parser.add_argument("--online", action="store_true", help="do not set HF_HUB_OFFLINE / HF_DATASETS_OFFLINE")
    parser.add_argument("snakemake_args", nargs=argparse.REMAINDER,
                        help="after '--': more Snakemake arguments, passed as they are")
    args = parser.parse_args(argv)
    if args.snakemake_args[:1] == ["--"]:
        args.snakemake_args = args.snakemake_args[1:]
    return args


def environment_facts(env: dict) -> dict:
    """Versions and the device, from a child process: this one never holds a CUDA context."""
    try:
        result = subprocess.run([sys.executable, "-c", ENV_PROBE], capture_output=True, text=True, env=env,
                                timeout=180)
        return json.loads(result.stdout.strip().splitlines()[-1])
    except Exception as err:  # facts are informative; a failure here must not stop the smoke run
        return {"error": f"{type(err).__name__}: {err}"}


def prepare_workdir(workdir: Path, resume: bool) -> Path:
    workdir = workdir.resolve()
    if workdir.exists() and any(workdir.iterdir()) and not resume:
        if not (workdir / MARKER).exists():
            sys.exit(f"smoke_gpu: {workdir} is not empty and holds no previous smoke run; choose another --workdir "
                     "or pass --resume")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("scripts/smoke_gpu.py work dir; safe to delete\n")
    return workdir


def snakemake_command(args: argparse.Namespace, workdir: Path) -> list[str]:
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(Path(args.configfile).resolve()), "--cores", str(args.cores),
        "--resources", f"gpu={args.gpu_jobs}", *args.snakemake_args,
    ]
    if args.config:
        command += ["--config", *args.config]
    return command


def run_snakemake(command: list[str], out_path: Path, env: dict, timeout: float) -> int:
    """Run Snakemake (output to ``out_path``), printing its progress now and then; 124 on timeout."""
    with open(out_path, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own process group: a timeout stops every job
        started, last_report, last_progress = time.monotonic(), 0.0, None
        while True:
            try:
                return process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic() - started
            if now > timeout:
                print(f"  timeout after {now:.0f} s: stopping snakemake and its jobs", flush=True)
                stop(process)
                return 124
            progress = last_match(r"^(\d+ of \d+ steps \(\d+%\) done)", out_path)
            if progress != last_progress and now - last_report >= 20:
                print(f"  [{now:4.0f} s] {progress or 'building the DAG'}", flush=True)
                last_report, last_progress = now, progress


def stop(process: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def last_match(pattern: str, path: Path) -> str | None:
    try:
        matches = re.findall(pattern, path.read_text(errors="replace"), re.M)
    except OSError:
        return None
    return matches[-1] if matches else None


# ----------------------------------------------------------------------------------------------------------
# Reading back what the run left: Snakemake's output, benchmarks/**/*.tsv, logs/**/*.log.

STAMP = r"^\[(?P<stamp>\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\n"
JOB_BLOCK = re.compile(STAMP + r"(?:local)?rule (?P<rule>[\w.-]+):\n(?P<body>(?:    .*\n?)+)", re.M)
FINISHED = re.compile(STAMP + r"Finished jobid: (?P<jobid>\d+) \(Rule: (?P<rule>[\w.-]+)\)", re.M)
ERROR_BLOCK = re.compile(r"^Error in rule (?P<rule>[\w.-]+):\n(?P<body>(?:    .*\n?)+)", re.M)


def parse_snakemake_output(text: str) -> dict[str, dict]:
    """jobid -> {rule, log, benchmark, start, end, failed} from Snakemake's console output."""
    jobs: dict[str, dict] = {}
    for match in JOB_BLOCK.finditer(text):
        fields = block_fields(match.group("body"))
        if "jobid" not in fields:
            continue
        jobs[fields["jobid"]] = {
            "rule": match.group("rule"), "log": first_path(fields.get("log")),
            "benchmark": first_path(fields.get("benchmark")), "start": stamp(match.group("stamp")),
            "end": None, "failed": False,
        }
    for match in FINISHED.finditer(text):
        if match.group("jobid") in jobs:
            jobs[match.group("jobid")]["end"] = stamp(match.group("stamp"))
    for job in jobs.values():
        job["failed"] = job["end"] is None  # still running when Snakemake stopped, unless an error says more
    for match in ERROR_BLOCK.finditer(text):
        fields = block_fields(match.group("body"))
        job = jobs.setdefault(fields.get("jobid", f"error-{match.start()}"),
                              {"rule": match.group("rule"), "log": first_path(fields.get("log")), "benchmark": None,
                               "start": None, "end": None})
        job["failed"] = True
    return jobs


def block_fields(body: str) -> dict[str, str]:
    fields = {}
    for line in body.splitlines():
        key, sep, value = line.strip().partition(": ")
        if sep:
            fields[key] = value
    return fields


def first_path(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(" (check log")[0].split(", ")[0].strip() or None


def stamp(text: str) -> float:
    return datetime.strptime(re.sub(" +", " ", text), "%a %b %d %H:%M:%S %Y").timestamp()


def read_benchmark(path: Path) -> dict:
    """The first data row of a Snakemake benchmark TSV (``s``, ``max_rss`` in MB, ...) as floats."""
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        return {}
    row = {}
    for key, value in zip(lines[0].split("\t"), lines[1].split("\t")):
        try:
            row[key] = float(value)
        except ValueError:
            pass  # "h:m:s" and "NA"
    return row


def collect_jobs(workdir: Path, snakemake_text: str) -> list[dict]:
    """One dict per job that left a log or a benchmark: rule, wall_s, max_rss_mb, GPU peaks, probe lines."""
    by_log: dict[str, dict] = {}
    for jobid, job in parse_snakemake_output(snakemake_text).items():
        key = job["log"] or job["benchmark"]
        if key:  # `rule all` and other log-less local rules have nothing to report
            by_log[key] = {"jobid": jobid, **job}
    logs_dir = workdir / "logs"
    for path in sorted(logs_dir.rglob("*.log")) if logs_dir.is_dir() else []:
        by_log.setdefault(str(path.relative_to(workdir)), {"rule": None, "benchmark": None, "failed": False})
    for path in sorted((workdir / "benchmarks").rglob("*.tsv")) if (workdir / "benchmarks").is_dir() else []:
        bench = str(path.relative_to(workdir))
        mirror = "logs/" + str(Path(bench).relative_to("benchmarks").with_suffix(".log"))  # logs/ mirrors benchmarks/
        job = by_log.get(mirror) or next((j for j in by_log.values() if j.get("benchmark") == bench), None)
        if job is None:
            job = by_log.setdefault(bench, {"rule": None, "failed": False})
        job["benchmark"] = bench

    jobs = []
    for key, job in by_log.items():
        record = {"rule": job.get("rule"), "log": key if key.endswith(".log") else None,
                  "benchmark": job.get("benchmark"), "failed": bool(job.get("failed")), "wall_s": None,
                  "wall_from": None, "max_rss_mb": None, "probes": []}
        stats = {}
        if record["log"] and (workdir / record["log"]).is_file():
            parsed = parse_log_lines((workdir / record["log"]).read_text(errors="replace").splitlines())
            stats = parsed[JOB_STATS][-1] if parsed[JOB_STATS] else {}
            record["probes"] = parsed[PROBE_THROUGHPUT]
        bench = read_benchmark(workdir / record["benchmark"]) if record["benchmark"] and (
            workdir / record["benchmark"]).is_file() else {}
        record["rule"] = record["rule"] or stats.get("rule") or key
        if "s" in bench:
            record["wall_s"], record["wall_from"] = bench["s"], "benchmark"
        elif stats.get("wall_s") is not None:
            record["wall_s"], record["wall_from"] = stats["wall_s"], "job_stats"
        elif job.get("start") and job.get("end"):
            record["wall_s"], record["wall_from"] = job["end"] - job["start"], "snakemake"
        rss = [v for v in (bench.get("max_rss"), stats.get("max_rss_mb")) if v is not None]
        record["max_rss_mb"] = max(rss) if rss else None
        for field in ("cuda", "device", "gpu_max_allocated_mb", "gpu_max_reserved_mb", "startup_s", "cpu_s"):
            if field in stats:
                record[field] = stats[field]
        jobs.append(record)
    return jobs


def rule_table(jobs: list[dict]) -> list[dict]:
    rows: dict[str, dict] = {}
    for job in jobs:
        row = rows.setdefault(job["rule"], {"rule": job["rule"], "jobs": 0, "failed": 0, "total_s": 0.0,
                                            "max_s": None, "max_rss_mb": None, "gpu_alloc_mb": None,
                                            "gpu_reserved_mb": None, "probe_tokens": 0, "probe_s": 0.0,
                                            "rate_of": set()})
        row["jobs"] += 1
        row["failed"] += job["failed"]
        if job["wall_s"] is not None:
            row["total_s"] += job["wall_s"]
            row["max_s"] = max(row["max_s"] or 0.0, job["wall_s"])
        for field, source in (("max_rss_mb", "max_rss_mb"), ("gpu_alloc_mb", "gpu_max_allocated_mb"),
                              ("gpu_reserved_mb", "gpu_max_reserved_mb")):
            if job.get(source) is not None:
                row[field] = max(row[field] or 0.0, job[source])
        for probe in job["probes"]:
            row["probe_tokens"] += probe["new_tokens"] if probe["rate_of"] == "new_tokens" else probe["prompt_tokens"]
            row["probe_s"] += probe["seconds"]
            row["rate_of"].add(probe["rate_of"])
    for row in rows.values():
        row["tokens_per_s"] = row["probe_tokens"] / row["probe_s"] if row["probe_s"] > 0 else None
        row["rate_of"] = "+".join(sorted(row["rate_of"]))
    return sorted(rows.values(), key=lambda r: -r["total_s"])


def probe_table(jobs: list[dict]) -> list[dict]:
    """Probe lines summed per (rule, probe set)."""
    rows: dict[tuple, dict] = {}
    for job in jobs:
        for probe in job["probes"]:
            row = rows.setdefault((job["rule"], probe["set"]), {
                "rule": job["rule"], "set": probe["set"], "jobs": 0, "prompts": 0, "prompt_tokens": 0,
                "new_tokens": 0, "seconds": 0.0, "rate_of": probe["rate_of"]})
            row["jobs"] += 1
            for field in ("prompts", "prompt_tokens", "new_tokens", "seconds"):
                row[field] += probe[field]
    for row in rows.values():
        counted = row["new_tokens"] if row["rate_of"] == "new_tokens" else row["prompt_tokens"]
        row["tokens_per_s"] = counted / row["seconds"] if row["seconds"] > 0 else None
    return sorted(rows.values(), key=lambda r: (r["rule"], r["set"]))


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def format_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


RULE_HEADER = ["rule", "jobs", "failed", "total_s", "max_s", "peak_rss_mb", "gpu_alloc_mb", "gpu_resv_mb",
               "probe_tok_s"]


def format_rule_table(rules: list[dict]) -> str:
    rows = [[r["rule"], str(r["jobs"]), str(r["failed"]), _fmt(r["total_s"]), _fmt(r["max_s"]),
             _fmt(r["max_rss_mb"], 0), _fmt(r["gpu_alloc_mb"], 0), _fmt(r["gpu_reserved_mb"], 0),
             _fmt(r["tokens_per_s"])] for r in rules]
    return format_table(RULE_HEADER, rows)


PROBE_HEADER = ["rule", "set", "jobs", "prompts", "prompt_tok", "new_tok", "seconds", "tok_s", "rate_of"]


def format_probe_table(probes: list[dict]) -> str:
    rows = [[p["rule"], p["set"], str(p["jobs"]), str(p["prompts"]), str(p["prompt_tokens"]), str(p["new_tokens"]),
             _fmt(p["seconds"], 2), _fmt(p["tokens_per_s"]), p["rate_of"]] for p in probes]
    return format_table(PROBE_HEADER, rows)


def print_failures(workdir: Path, snakemake_text: str, jobs: list[dict], rc: int, lines: int = 40) -> None:
    failed = [job for job in jobs if job["failed"]]
    if not failed:
        print(f"== snakemake exited {rc} with no failed job named; the tail of its output:")
        print("\n".join(snakemake_text.splitlines()[-lines:]))
        return
    for job in failed:
        path = workdir / job["log"] if job["log"] else None
        print(f"== failed: rule {job['rule']}, log {job['log']}")
        if path and path.is_file():
            print("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        else:
            print("  (no log file)")
    print("== the end of snakemake's output")
    print("\n".join(snakemake_text.splitlines()[-lines // 2:]))


if __name__ == "__main__":
    sys.exit(main())
