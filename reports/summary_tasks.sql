-- Summary per task · per variant and task: the score (primary metric, percent) with its 95 % interval over
-- items, and for a non-dense variant the paired difference to the dense model in points with its 95 %
-- interval (bootstrap over the items both evaluated) and whether it is within noise (the interval contains 0).
-- Views: see prunescope/report/sources.py (task_intervals, task_changes).
SELECT s.model, s.variant, v.label, v.kind, s.task, s.task_kind, s.metric, s.filter, s.score_pct, s.lo_pct,
       s.hi_pct, s.n_items, c.diff_pct, c.diff_lo_pct, c.diff_hi_pct, c.rel_change, c.within_noise
FROM task_intervals s
JOIN variants v USING (variant)
LEFT JOIN task_changes c USING (model, variant, task)
ORDER BY s.model, s.task_kind, s.task, v.sort
