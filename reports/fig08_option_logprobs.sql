-- Fig 8b · Option-token log-probabilities on multiple-choice prompts (one forward pass over the prompt).
-- For each prompt the options (2 to 5, as many as the item has) are ranked by the dense model's
-- log-probability (rank 1 = its choice); the full-vocabulary log p of the option at each rank is averaged
-- over the prompts that have that many options, for the dense model and the variant, with a 95 % interval
-- (bootstrap over those prompts). Parallel curves: the tail moves but the order inside the option subspace
-- survives.
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
    SELECT model, variant, probe_set, prompt_id, dense_rank, 'dense' AS side, logp_dense AS logp FROM ranked
    UNION ALL
    SELECT model, variant, probe_set, prompt_id, dense_rank, 'variant' AS side, logp_variant AS logp FROM ranked
),
boot AS (
    SELECT model, variant, dense_rank, side,
           ci95(list(logp ORDER BY probe_set, prompt_id), list(1.0::DOUBLE ORDER BY probe_set, prompt_id)) AS ci
    FROM sides GROUP BY ALL
)
SELECT b.model, b.variant, v.label, v.sort, b.dense_rank, b.side, b.ci.est AS mean_logp, b.ci.lo AS ci_lo,
       b.ci.hi AS ci_hi, b.ci.n::BIGINT AS n_prompts
FROM boot b JOIN variants v USING (variant)
ORDER BY b.model, v.sort, b.dense_rank, b.side
