-- Figs 3, 9 · Task scores of the dense model and of each intra-layer pruning method at each sparsity
-- pattern (unstructured, then N:M from the loosest M down, e.g. 4:8 before 2:4).
-- Views: see prunescope/report/sources.py (task_intervals: each task's primary metric in percent, with a
-- 95 % interval from a bootstrap over the task's items).
-- One row per (model, task, variant).
SELECT s.model, s.task, s.task_kind, s.metric, s.variant, v.label,
       coalesce(v.method, 'dense') AS method, v.pattern_label, v.pattern_sort,
       s.score_pct, s.lo_pct, s.hi_pct, s.n_items
FROM task_intervals s JOIN variants v USING (variant)
WHERE v.kind IN ('dense', 'prune')
ORDER BY s.model, s.task_kind, s.task, v.pattern_sort, v.sort
