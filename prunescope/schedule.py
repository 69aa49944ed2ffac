"""The order in which a run on a few cores starts its ready jobs: one priority per rule.

Whenever cores free up, Snakemake starts the ready jobs of highest priority that fit them; among equal
priorities it prefers the jobs with the largest inputs. With every priority equal, the default run
(`make run`, 2 cores, 115 jobs, at 6c4212a) had one job running, and the other core idle, for 1046 of its
2939 s:

- prune, quantize, layer_scores and drop_spec asked for 2 threads, so each waited until both cores were
  free, while every single-thread job that became ready took a core as soon as one freed: a prune waited
  minutes behind a layer-wise metrics job, and all of its variant's work with it. Every rule now takes one
  thread (the rule files say so; a run on N cores runs N jobs side by side);
- the largest-inputs rule started the layer-wise metrics of a variant before the rewrites that unlock the
  other variants, and the last variant's layer-wise probe and metrics, the longest chain, ran alone at
  the end.

So a rule's priority is its rank by the longest chain of work it starts (its "upward rank" in list
scheduling): a rule ranks above every rule that consumes its outputs, and among rules ready at once the
one heading the longer chain goes first. Typical job seconds of that run (benchmarks/, 2 cores):
rewrite 35-55 + layer-wise probe 58 + layer-wise metrics 130-170 > task evaluation 100 > generation
probe 55 + its metrics 11 > subspace probe 48 + its metrics 8 > a report figure 2-7.
"""

from __future__ import annotations

# Higher starts first. The report rules (and the target rule ``all``) are light and run last, at the default 0.
PRIORITY = {
    "model": 100,
    "task_data": 90,
    "task_fetch": 90,
    "calibration": 90,
    "probe_prompts": 90,
    "layer_scores": 85,
    "prune": 80,
    "quantize": 80,
    "drop_spec": 80,
    "probe_layerwise_drop": 70,
    "probe_layerwise_pruned": 70,
    # The dense references that every variant's generation and subspace probe reads.
    "probe_generation_dense": 70,
    "probe_subspace_dense": 70,
    "metrics_layerwise": 60,
    "task_eval": 50,
    "probe_generation": 40,
    "probe_subspace": 40,
    "metrics_generation": 30,
    "metrics_subspace": 30,
}
REPORT_PRIORITY = 0


def priority(rule: str) -> int:
    """The priority of ``rule``: its entry in :data:`PRIORITY`, :data:`REPORT_PRIORITY` for report rules."""
    if rule in PRIORITY:
        return PRIORITY[rule]
    if rule == "all" or rule.startswith("report_"):
        return REPORT_PRIORITY
    raise KeyError(f"rule {rule!r} has no priority in prunescope.schedule.PRIORITY: rank it by the chain of work it starts")
