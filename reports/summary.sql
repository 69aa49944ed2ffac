-- Summary table · per variant (grouped by kind: intra-layer pruning, inter-layer dropping, quantisation):
-- - the relative change of its task scores against the dense model, averaged over the tasks of each kind
--   (multiple choice, retrieval, generative; each task's primary metric; tasks whose dense score is 0 left
--   out), with a 95 % interval from a paired bootstrap over items (resampled within each task), and
--   whether the change is within noise (the interval contains 0) — view kind_changes;
-- - the mean probability-space KL(p_dense‖p_variant) over every step of the generation probe, free-running
--   and teacher-forced, with a 95 % interval (bootstrap over prompts);
-- - the argmax agreement with the dense model among the options and over the full vocabulary on the
--   multiple-choice prompts, in percent, with 95 % intervals (bootstrap over items).
-- Views: see prunescope/report/sources.py. Parameter: $temperature (KL).
WITH kl_prompt AS (
    SELECT model, variant, mode, probe_set || ':' || prompt_id AS unit, sum(value) AS total, count(*)::DOUBLE AS rows
    FROM metrics
    WHERE probe = 'generation' AND space = 'probability' AND metric = 'kl' AND temperature = $temperature
      AND mode IN ('free', 'forced')
    GROUP BY ALL
),
kl AS (
    SELECT model, variant,
           any_value(ci) FILTER (WHERE mode = 'free') AS free, any_value(ci) FILTER (WHERE mode = 'forced') AS forced
    FROM (SELECT model, variant, mode, ci95(list(total ORDER BY unit), list(rows ORDER BY unit)) AS ci
          FROM kl_prompt GROUP BY ALL)
    GROUP BY model, variant
),
agree_item AS (
    SELECT model, variant, metric, probe_set || ':' || prompt_id AS unit, avg(value) AS agree
    FROM metrics
    WHERE probe = 'subspace' AND (temperature IS NULL OR temperature = $temperature)
      AND ((space = 'probability' AND metric = 'top1_agree') OR (space = 'subspace' AND metric = 'argmax_agree'))
    GROUP BY ALL
),
agree AS (
    SELECT model, variant,
           any_value(ci) FILTER (WHERE metric = 'argmax_agree') AS options,
           any_value(ci) FILTER (WHERE metric = 'top1_agree') AS top1
    FROM (SELECT model, variant, metric, ci95(list(agree ORDER BY unit), list(1.0::DOUBLE ORDER BY unit)) AS ci
          FROM agree_item GROUP BY ALL)
    GROUP BY model, variant
),
keys AS (
    SELECT model, variant FROM task_scores
    UNION SELECT model, variant FROM kl
    UNION SELECT model, variant FROM agree
    UNION SELECT model, 'dense' FROM metrics
    UNION SELECT model, 'dense' FROM task_scores
),
kinds AS (SELECT * FROM kind_changes)
SELECT k.model, k.variant, v.label, v.kind,
       max(c.rel_change) FILTER (WHERE c.task_kind = 'multiple_choice') AS multiple_choice_rel_change,
       max(c.rel_lo) FILTER (WHERE c.task_kind = 'multiple_choice') AS multiple_choice_rel_lo,
       max(c.rel_hi) FILTER (WHERE c.task_kind = 'multiple_choice') AS multiple_choice_rel_hi,
       bool_or(c.within_noise) FILTER (WHERE c.task_kind = 'multiple_choice') AS multiple_choice_within_noise,
       max(c.rel_change) FILTER (WHERE c.task_kind = 'retrieval') AS retrieval_rel_change,
       max(c.rel_lo) FILTER (WHERE c.task_kind = 'retrieval') AS retrieval_rel_lo,
       max(c.rel_hi) FILTER (WHERE c.task_kind = 'retrieval') AS retrieval_rel_hi,
       bool_or(c.within_noise) FILTER (WHERE c.task_kind = 'retrieval') AS retrieval_within_noise,
       max(c.rel_change) FILTER (WHERE c.task_kind = 'generative') AS generative_rel_change,
       max(c.rel_lo) FILTER (WHERE c.task_kind = 'generative') AS generative_rel_lo,
       max(c.rel_hi) FILTER (WHERE c.task_kind = 'generative') AS generative_rel_hi,
       bool_or(c.within_noise) FILTER (WHERE c.task_kind = 'generative') AS generative_within_noise,
       coalesce(sum(c.n_tasks), 0)::BIGINT AS n_tasks,
       any_value(kl.free.est) AS kl_free_mean, any_value(kl.free.lo) AS kl_free_lo, any_value(kl.free.hi) AS kl_free_hi,
       any_value(kl.forced.est) AS kl_forced_mean, any_value(kl.forced.lo) AS kl_forced_lo,
       any_value(kl.forced.hi) AS kl_forced_hi,
       any_value(100 * a.options.est) AS option_agree_pct, any_value(100 * a.options.lo) AS option_agree_lo,
       any_value(100 * a.options.hi) AS option_agree_hi,
       any_value(100 * a.top1.est) AS top1_agree_pct, any_value(100 * a.top1.lo) AS top1_agree_lo,
       any_value(100 * a.top1.hi) AS top1_agree_hi, any_value(a.options.n)::BIGINT AS n_mc_items
FROM keys k
JOIN variants v USING (variant)
LEFT JOIN kinds c ON c.model = k.model AND c.variant = k.variant
LEFT JOIN kl ON kl.model = k.model AND kl.variant = k.variant
LEFT JOIN agree a ON a.model = k.model AND a.variant = k.variant
GROUP BY k.model, k.variant, v.label, v.kind, v.sort
ORDER BY k.model, v.sort
