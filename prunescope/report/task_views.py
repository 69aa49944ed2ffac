"""The task views of the report: one score per task, its per-item values, and intervals over items.

Built on the ``tasks`` (summary) and ``task_samples`` (per-item) views of :mod:`prunescope.report.sources`:

================  ========================================================================================
view              rows
================  ========================================================================================
task_primary      one (metric, filter) per (model, task): the score a task is shown by, the same for every
                  variant (:data:`PRIMARY_METRICS`, then :data:`PRIMARY_FILTERS`, then alphabetical)
task_scores       one score per (model, variant, task) in percent as lm-eval reported it: a group task's own
                  row, else the mean of its subtasks; ``stderr_pct`` and ``n`` beside it
task_items        the primary metric's value per evaluated item (model, variant, task, subtask, doc_id)
task_intervals    task_scores with a 95 % interval over items (``lo_pct``, ``hi_pct``, ``n_items``)
task_changes      per non-dense variant and task, paired over the items both evaluated: the relative change
                  Σ(v − d)/Σd with its interval, the score difference in points with its interval, and
                  ``within_noise`` (the difference's interval contains 0)
kind_changes      per non-dense variant and task kind: the mean relative change over the kind's tasks
                  (items resampled within each task), its interval and ``within_noise``; tasks on which
                  the dense model scores 0 are left out
================  ========================================================================================

Intervals are the seeded bootstrap of :mod:`prunescope.report.intervals` (``ci95``, ``ci95_strata``).
"""

from __future__ import annotations

import duckdb

# The score a task is shown by, first match wins (lm-eval metric names); other metrics (e.g. the gold
# companions gold_acc / gold_loglik) come after these in alphabetical order. Length-normalised accuracy
# first, as usually reported for HellaSwag and ARC.
PRIMARY_METRICS = ("acc_norm", "acc", "exact_match", "pass@1", "ndcg@10", "recall@1", "f1")
# Then the filter: lm-eval's "none", then (retrieval) mean pooling — a causal LM not trained as an
# encoder has no sentence embedding in its last token — then alphabetical.
PRIMARY_FILTERS = ("none", "mean")

# Items in a fixed order inside every bootstrap list, so intervals do not depend on scan order.
_ITEM_ORDER = "ORDER BY subtask, doc_id"


def _list(values) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


VIEWS = {
    "task_primary": f"""
        SELECT model, task, metric, filter FROM (
            SELECT model, task, metric, filter,
                   row_number() OVER (PARTITION BY model, task ORDER BY
                       coalesce(list_position({_list(PRIMARY_METRICS)}, metric), 1000), metric,
                       coalesce(list_position({_list(PRIMARY_FILTERS)}, filter), 1000), filter) AS rank
            FROM (SELECT DISTINCT model, task, metric, filter FROM tasks)
        ) WHERE rank = 1""",
    "task_scores": """
        -- one value per (metric, filter): a group's own row when lm-eval reports one, else its subtasks' mean
        WITH per_task AS (
            SELECT model, variant, task, any_value(task_kind) AS task_kind, metric, filter,
                   CASE WHEN bool_or(subtask = task) THEN max(value) FILTER (WHERE subtask = task)
                        ELSE avg(value) END AS value,
                   CASE WHEN bool_or(subtask = task) THEN max(stderr) FILTER (WHERE subtask = task)
                        WHEN count(*) = 1 THEN max(stderr) END AS stderr,
                   CASE WHEN bool_or(subtask = task) THEN max(n) FILTER (WHERE subtask = task)
                        ELSE sum(n) END AS n
            FROM tasks GROUP BY model, variant, task, metric, filter
        )
        SELECT t.model, t.variant, t.task, t.task_kind, t.metric, t.filter,
               100 * t.value AS score_pct, 100 * t.stderr AS stderr_pct, t.n
        FROM per_task t JOIN task_primary p
          ON t.model = p.model AND t.task = p.task AND t.metric = p.metric AND t.filter IS NOT DISTINCT FROM p.filter""",
    "task_items": """
        SELECT s.model, s.variant, s.task, s.task_kind, s.subtask, s.doc_id, p.metric, p.filter,
               s.metrics[p.metric] AS value
        FROM task_samples s JOIN task_primary p
          ON s.model = p.model AND s.task = p.task AND s.filter IS NOT DISTINCT FROM p.filter
        WHERE s.metrics[p.metric] IS NOT NULL""",
    "task_intervals": f"""
        WITH boot AS (
            SELECT model, variant, task, ci95(list(value {_ITEM_ORDER}), list(1.0::DOUBLE {_ITEM_ORDER})) AS ci
            FROM task_items GROUP BY model, variant, task
        )
        SELECT s.*, 100 * b.ci.lo AS lo_pct, 100 * b.ci.hi AS hi_pct, b.ci.n::BIGINT AS n_items
        FROM task_scores s LEFT JOIN boot b USING (model, variant, task)""",
    "task_pairs": """
        SELECT v.model, v.variant, v.task, v.task_kind, v.subtask, v.doc_id, v.value AS variant_value,
               d.value AS dense_value
        FROM task_items v JOIN task_items d
          ON v.model = d.model AND v.task = d.task AND v.subtask = d.subtask AND v.doc_id = d.doc_id
         AND d.variant = 'dense'
        WHERE v.variant <> 'dense'""",
    "task_changes": f"""
        WITH boot AS (
            SELECT model, variant, task, any_value(task_kind) AS task_kind,
                   ci95(list(variant_value - dense_value {_ITEM_ORDER}), list(dense_value {_ITEM_ORDER})) AS rel,
                   ci95(list(variant_value - dense_value {_ITEM_ORDER}), list(1.0::DOUBLE {_ITEM_ORDER})) AS diff
            FROM task_pairs GROUP BY model, variant, task
        )
        SELECT model, variant, task, task_kind, rel.est AS rel_change, rel.lo AS rel_lo, rel.hi AS rel_hi,
               100 * diff.est AS diff_pct, 100 * diff.lo AS diff_lo_pct, 100 * diff.hi AS diff_hi_pct,
               diff.n::BIGINT AS n_items, diff.lo <= 0 AND 0 <= diff.hi AS within_noise
        FROM boot""",
    "kind_changes": f"""
        WITH kept AS (  -- tasks on which the dense model scores above 0 (a relative change needs it)
            SELECT p.* FROM task_pairs p
            JOIN (SELECT model, task FROM task_items WHERE variant = 'dense'
                  GROUP BY model, task HAVING sum(value) > 0) USING (model, task)
        ),
        boot AS (
            SELECT model, variant, task_kind,
                   ci95_strata(list(variant_value - dense_value ORDER BY task, subtask, doc_id),
                               list(dense_value ORDER BY task, subtask, doc_id),
                               list(task ORDER BY task, subtask, doc_id)) AS rel,
                   count(DISTINCT task) AS n_tasks
            FROM kept GROUP BY model, variant, task_kind
        )
        SELECT model, variant, task_kind, rel.est AS rel_change, rel.lo AS rel_lo, rel.hi AS rel_hi,
               n_tasks, rel.n::BIGINT AS n_items, rel.lo <= 0 AND 0 <= rel.hi AS within_noise
        FROM boot""",
}


def create_task_views(con: duckdb.DuckDBPyConnection) -> None:
    """Create :data:`VIEWS` on ``con``, which must hold ``tasks``, ``task_samples`` and the ``ci95`` functions."""
    for name, sql in VIEWS.items():
        con.execute(f"CREATE VIEW {name} AS {sql}")
