-- Fig 8b · Option-token log-probabilities on multiple-choice prompts (one forward pass over the prompt).
-- For each prompt the options are ranked by the dense model's log-probability (rank 1 = its choice); the
-- full-vocabulary log p of the option at each rank is averaged over prompts, for the dense model and the
-- variant. Parallel curves: the tail moves but the order inside the option subspace survives.
-- Views: see prunescope/report/sources.py. Parameter: $temperature.
-- One row per (model, variant, dense rank, side).
WITH options AS (
    SELECT model, variant, probe_set, prompt_id,
           regexp_extract(metric, '^logp_(ref|var)_([0-9]+)$', 2)::INTEGER AS option,
           max(value) FILTER (WHERE starts_with(metric, 'logp_ref_')) AS logp_dense,
           max(value) FILTER (WHERE starts_with(metric, 'logp_var_')) AS logp_variant
    FROM metrics
    WHERE probe = 'subspace' AND space = 'subspace' AND starts_with(metric, 'logp_')
      AND temperature = $temperature
    GROUP BY ALL
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY model, variant, probe_set, prompt_id
                                 ORDER BY logp_dense DESC, option) AS dense_rank
    FROM options
),
sides AS (
    SELECT model, variant, dense_rank, 'dense' AS side, logp_dense AS logp FROM ranked
    UNION ALL
    SELECT model, variant, dense_rank, 'variant' AS side, logp_variant AS logp FROM ranked
)
SELECT s.model, s.variant, v.label, v.sort, s.dense_rank, s.side,
       avg(s.logp) AS mean_logp, min(s.logp) AS lo, max(s.logp) AS hi, count(*) AS n_prompts
FROM sides s JOIN variants v USING (variant)
GROUP BY s.model, s.variant, v.label, v.sort, s.dense_rank, s.side
ORDER BY s.model, v.sort, s.dense_rank, s.side
