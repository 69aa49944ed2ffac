-- Summary table · per variant: relative change of its task scores against the dense model, averaged over
-- the tasks of each kind (multiple choice, retrieval, generative; each task's primary metric, tasks whose
-- dense score is 0 left out), and the mean probability-space KL(p_dense‖p_variant) over every step of the
-- generation probe, free-running and teacher-forced.
-- Views: see prunescope/report/sources.py. Parameter: $temperature (KL).
WITH dense AS (
    SELECT model, task, score_pct AS dense_pct FROM task_scores WHERE variant = 'dense'
),
relative AS (
    SELECT s.model, s.variant, s.task_kind, avg(s.score_pct / d.dense_pct - 1) AS rel_change, count(*) AS n_tasks
    FROM task_scores s JOIN dense d USING (model, task)
    WHERE d.dense_pct > 0
    GROUP BY s.model, s.variant, s.task_kind
),
kl AS (
    SELECT model, variant, avg(value) FILTER (WHERE mode = 'free') AS kl_free,
           avg(value) FILTER (WHERE mode = 'forced') AS kl_forced
    FROM metrics
    WHERE probe = 'generation' AND space = 'probability' AND metric = 'kl' AND temperature = $temperature
    GROUP BY model, variant
),
keys AS (
    SELECT model, variant FROM task_scores
    UNION SELECT model, variant FROM kl
    UNION SELECT model, 'dense' FROM metrics
    UNION SELECT model, 'dense' FROM task_scores
)
SELECT k.model, k.variant, v.label, v.kind,
       max(r.rel_change) FILTER (WHERE r.task_kind = 'multiple_choice') AS multiple_choice_rel_change,
       max(r.rel_change) FILTER (WHERE r.task_kind = 'retrieval') AS retrieval_rel_change,
       max(r.rel_change) FILTER (WHERE r.task_kind = 'generative') AS generative_rel_change,
       coalesce(sum(r.n_tasks), 0)::BIGINT AS n_tasks,
       any_value(kl.kl_free) AS kl_free_mean, any_value(kl.kl_forced) AS kl_forced_mean
FROM keys k
JOIN variants v USING (variant)
LEFT JOIN relative r ON r.model = k.model AND r.variant = k.variant
LEFT JOIN kl ON kl.model = k.model AND kl.variant = k.variant
GROUP BY k.model, k.variant, v.label, v.kind, v.sort
ORDER BY k.model, v.sort
