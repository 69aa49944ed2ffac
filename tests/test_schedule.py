"""The default run's scheduling (prunescope.schedule): single-thread jobs, and priorities that rank every
rule above the rules consuming its outputs, read from Snakemake's own plan and rule graph."""

import re
from pathlib import Path

import pytest

from prunescope.schedule import PRIORITY, priority
from tests.test_cluster import dry_run

ROOT = Path(__file__).resolve().parents[1]


def default_dry_run(*args: str, workdir: Path) -> str:
    """A dry run of the default config in an empty ``workdir`` (so every job is planned), at 2 cores."""
    return dry_run("--directory", str(workdir), "--configfile", str(ROOT / "config" / "config.yaml"), "--cores", "2",
                   *args).stdout


def planned_settings(plan: str) -> list[tuple[str, int, int]]:
    """(rule, threads, priority) of every job of a dry run; Snakemake prints a job's threads and priority
    only where they are not 1 and 0."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", plan):
        if not (rule := re.match(r"(?:local)?rule (\w+):\n", block)):
            continue
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        rank = re.search(r"^\s+priority: (-?\d+)$", block, re.M)
        jobs.append((rule.group(1), int(threads.group(1)) if threads else 1, int(rank.group(1)) if rank else 0))
    return jobs


def rule_edges(dot: str) -> list[tuple[str, str]]:
    """(producer, consumer) of every edge of ``snakemake --rulegraph``."""
    names = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", dot, re.M))
    return [(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)$", dot, re.M)]


@pytest.fixture(scope="module")
def default_plan(tmp_path_factory) -> str:
    return default_dry_run(workdir=tmp_path_factory.mktemp("plan"))


def test_every_default_job_takes_one_thread_and_its_rules_priority(default_plan):
    jobs = planned_settings(default_plan)
    assert len(jobs) > 100 and {"prune", "quantize", "drop_spec", "metrics_layerwise", "task_eval"} <= {r for r, _, _ in jobs}
    # A 2-thread job on 2 cores waits for both to be free while single-thread jobs take each one as it frees.
    assert [(rule, threads) for rule, threads, _ in jobs if threads != 1] == []
    assert [(rule, rank) for rule, _, rank in jobs if rank != priority(rule)] == []


def test_a_rule_ranks_above_the_rules_that_read_its_outputs(tmp_path):
    edges = [(a, b) for a, b in rule_edges(default_dry_run("--rulegraph", workdir=tmp_path)) if b != "all"]
    assert len(edges) > 40 and ("prune", "probe_layerwise_pruned") in edges
    # Report rules all run last at the same priority; every other edge strictly descends.
    wrong = [(a, b) for a, b in edges if priority(a) < priority(b) or (priority(a) == priority(b) and not a.startswith("report_"))]
    assert wrong == []


def test_the_longest_chain_starts_first():
    """Among jobs ready at once: the layer-wise metrics (130-170 s) before a task evaluation (100 s), before
    a generation probe (55 s + 11 s of metrics), before the short metrics jobs."""
    assert PRIORITY["metrics_layerwise"] > PRIORITY["task_eval"] > PRIORITY["probe_generation"] > PRIORITY["metrics_generation"]
    assert PRIORITY["prune"] > PRIORITY["probe_layerwise_drop"]  # a rewrite unlocks a variant's every job


def test_a_rule_without_a_priority_is_named():
    assert priority("report_fig01_drop_tasks") == 0
    with pytest.raises(KeyError, match="rule 'probe_new_kind' has no priority in prunescope.schedule.PRIORITY"):
        priority("probe_new_kind")


def test_the_default_profile_re_selects_jobs_rarely_but_never_limits_a_local_run():
    """Snakemake adds one periodic re-selection (every timespan of --max-jobs-per-timespan) per finished job,
    each stat-ing the inputs of every ready job; the default profile makes the period 10 s, and its limit
    far above what a local run starts."""
    import yaml
    from snakemake.settings.types import MaxJobsPerTimespan

    profile = yaml.safe_load((ROOT / "profiles" / "default" / "config.yaml").read_text())
    limit = MaxJobsPerTimespan.parse_choice(profile["max-jobs-per-timespan"])
    assert limit.timespan >= 10
    assert limit.max_jobs / limit.timespan >= 10  # jobs per second a local run may start
