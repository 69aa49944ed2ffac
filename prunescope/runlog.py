"""Logging and thread setup for one pipeline job (called by the thin workflow scripts), and the
machine-readable lines a job leaves in its log.

Two kinds of line, each a marker followed by one JSON object, so that ``scripts/smoke_gpu.py`` (or
``grep``) can read them back from ``logs/**`` with :func:`parse_log_lines`:

- ``JOB_STATS {...}`` once per job, at interpreter exit: the rule, the job's wall time since its process
  started, the peak RSS and, when the job used CUDA, peak GPU memory and the device name;
- ``PROBE_THROUGHPUT {...}`` once per probe table: prompts, prompt tokens, new (decoded) tokens, seconds
  and tokens per second (see :func:`probe_throughput`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Iterable, Mapping, Sequence

JOB_STATS = "JOB_STATS"
PROBE_THROUGHPUT = "PROBE_THROUGHPUT"
MARKERS = (JOB_STATS, PROBE_THROUGHPUT)
MIB = 1024 * 1024


def setup_job(log_path: str, threads: int, name: str) -> logging.Logger:
    """Log to ``log_path`` and stderr, capture warnings, and use ``threads`` torch threads.

    Snakemake exports OMP_NUM_THREADS from the rule's ``threads:``; setting torch's count too keeps a
    job from oversubscribing the cores it was given. At exit the job logs its :func:`job_stats` line.
    """
    import torch  # here, not at the top: parsing logs (scripts/smoke_gpu.py) needs no torch

    setup_time = time.time()
    handler = logging.FileHandler(log_path, mode="w")
    logging.basicConfig(
        level=logging.INFO,
        handlers=[handler, logging.StreamHandler(sys.stderr)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    torch.set_num_threads(max(1, int(threads)))
    log = logging.getLogger(f"prunescope.{name}")
    _log_uncaught_exceptions(log)
    register_job_stats(log, name, setup_time)
    return log


def _log_uncaught_exceptions(log: logging.Logger) -> None:
    """Send a job's fatal traceback to its log file too (Snakemake's ``log:`` does not capture a script's
    stderr), so the log of a failed job says why; the exit status stays non-zero."""
    default = sys.excepthook

    def hook(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            default(kind, value, traceback)
        else:
            log.critical("uncaught exception", exc_info=(kind, value, traceback))  # file and stderr

    sys.excepthook = hook


def register_job_stats(log: logging.Logger, rule: str, setup_time: float | None = None) -> None:
    """Log this job's ``JOB_STATS`` line to ``log`` when the interpreter exits (also after an exception).

    Registered after the logging module's own exit hook, so it runs first: the handlers are still open.
    """
    atexit.register(_log_job_stats, log, rule, setup_time if setup_time is not None else time.time())


def _log_job_stats(log: logging.Logger, rule: str, setup_time: float) -> None:
    try:
        log.info("%s %s", JOB_STATS, json.dumps(job_stats(rule, setup_time)))
    except Exception as err:  # never turn a finished job into a failed one
        log.warning("could not collect job stats: %s: %s", type(err).__name__, err)


def job_stats(rule: str, setup_time: float | None = None) -> dict:
    """Wall time, CPU time and peak RSS of this process; peak GPU memory if it initialised CUDA.

    Cheap: no CUDA call is made (and CUDA is not initialised) unless torch already did so.
    """
    now = time.time()
    start = process_start_time()
    if start is not None and not (now - 7 * 86400 < start <= (setup_time or now) + 1):
        start = None  # an implausible clock (some sandboxes fake /proc/stat): time from setup_job instead
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats = {
        "rule": rule,
        "pid": os.getpid(),
        "wall_s": round(now - (start or setup_time or now), 3),
        # Interpreter start to setup_job: mostly importing torch / transformers.
        "startup_s": round(setup_time - start, 3) if start and setup_time else None,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "max_rss_mb": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is in KiB on Linux
        "cuda": False,
    }
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        device = torch.cuda.current_device()
        stats.update(
            cuda=True,
            device=torch.cuda.get_device_name(device),
            gpu_max_allocated_mb=round(torch.cuda.max_memory_allocated(device) / MIB, 1),
            gpu_max_reserved_mb=round(torch.cuda.max_memory_reserved(device) / MIB, 1),
            gpu_total_mb=round(torch.cuda.get_device_properties(device).total_memory / MIB, 1),
        )
    return stats


def process_start_time() -> float | None:
    """Epoch seconds at which this process started (Linux /proc), or None where unknown."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of stat(5); fields[0] is field 3
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def probe_throughput(
    probe: str,
    probe_set: str,
    prompts: Mapping[str, Sequence[int]],
    records: Iterable[Mapping],
    seconds: float,
) -> dict:
    """How many tokens a probe processed, counted from its records, and how fast.

    ``new_tokens``: decoding steps (one per distinct ``prompt_id, mode, step`` of a decoding probe; the
    subspace probe decodes nothing); ``prompt_tokens``: prompt tokens prefilled, once per
    (prompt, mode) run. ``tokens_per_s`` is new tokens per second for decoding probes and prompt tokens per
    second for the subspace probe (``rate_of`` says which). Where a probe runs two models (pruned-mode
    layer-wise) a token counts once.
    """
    runs, steps = set(), set()
    for row in records:
        runs.add((row["prompt_id"], row["mode"]))
        if probe != "subspace":
            steps.add((row["prompt_id"], row["mode"], row["step"]))
    prompt_tokens = sum(len(prompts[prompt_id]) for prompt_id, _ in runs if prompt_id in prompts)
    rate_of = "new_tokens" if steps else "prompt_tokens"
    counted = len(steps) if steps else prompt_tokens
    return {
        "probe": probe,
        "set": probe_set,
        "prompts": len({prompt_id for prompt_id, _ in runs}),
        "runs": len(runs),
        "prompt_tokens": prompt_tokens,
        "new_tokens": len(steps),
        "seconds": round(seconds, 4),
        "tokens_per_s": round(counted / seconds, 2) if seconds > 0 else None,
        "rate_of": rate_of,
    }


def log_probe_throughput(log: logging.Logger, probe: str, probe_set: str, prompts, records, seconds: float) -> dict:
    """Log one ``PROBE_THROUGHPUT`` line (see :func:`probe_throughput`) and return its fields."""
    fields = probe_throughput(probe, probe_set, prompts, records, seconds)
    log.info("%s %s", PROBE_THROUGHPUT, json.dumps(fields))
    return fields


def parse_log_lines(lines: Iterable[str]) -> dict[str, list[dict]]:
    """The ``JOB_STATS`` / ``PROBE_THROUGHPUT`` objects of a log (marker -> list, in order)."""
    found: dict[str, list[dict]] = {marker: [] for marker in MARKERS}
    for line in lines:
        for marker in MARKERS:
            head, sep, tail = line.partition(marker + " {")
            if sep:
                try:
                    found[marker].append(json.loads("{" + tail))
                except json.JSONDecodeError:
                    pass  # a line cut short (a killed job) is skipped, not fatal
                break
    return found
