-- Fig 1 · Task scores against the number of dropped layers, for attention, MLP and whole-block drops.
-- k = 0 is the dense model, the start of every curve. The paper's curves (Qwen2.5-7B-Instruct, inferred;
-- reports/paper_data) are returned beside ours with source = 'paper'.
-- Views: see prunescope/report/sources.py (task_intervals: each task's primary metric in percent, with a
-- 95 % interval from a bootstrap over the task's items).
-- One row per (source, model, task, unit, k).
WITH units AS (SELECT DISTINCT unit FROM variants WHERE kind = 'drop'),
ours AS (
    SELECT s.model, s.task, s.task_kind, s.metric, v.unit, v.k, s.score_pct, s.lo_pct, s.hi_pct, s.n_items
    FROM task_intervals s JOIN variants v USING (variant)
    WHERE v.kind = 'drop'
    UNION ALL
    SELECT s.model, s.task, s.task_kind, s.metric, u.unit, 0 AS k, s.score_pct, s.lo_pct, s.hi_pct, s.n_items
    FROM task_intervals s CROSS JOIN units u
    WHERE s.variant = 'dense'
)
SELECT 'this run' AS source, model, task, task_kind, metric, unit, k, score_pct, lo_pct, hi_pct, n_items FROM ours
UNION ALL
SELECT 'paper' AS source, model, task, task_kind, 'score' AS metric, drop_unit AS unit, n_dropped AS k,
       score_pct, NULL AS lo_pct, NULL AS hi_pct, NULL AS n_items
FROM paper_fig1
ORDER BY source DESC, model, task_kind, task, unit, k
