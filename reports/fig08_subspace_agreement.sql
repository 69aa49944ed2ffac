-- Fig 8 · Agreement with the dense model on multiple-choice prompts: how often the variant's top-1 token over
-- the full vocabulary is the dense model's, against how often its argmax among the option tokens is.
-- Views: see prunescope/report/sources.py. Parameter: $temperature (argmaxes do not depend on it: tables
-- that store them once have temperature null; older ones store a copy per temperature).
-- One row per (model, variant, measure): agreement in percent over all multiple-choice prompts (items), with
-- its 95 % interval (bootstrap over the items).
WITH per_item AS (
    SELECT model, variant, space, probe_set || ':' || prompt_id AS unit, avg(value) AS agree
    FROM metrics
    WHERE probe = 'subspace' AND (temperature IS NULL OR temperature = $temperature)
      AND ((space = 'probability' AND metric = 'top1_agree') OR (space = 'subspace' AND metric = 'argmax_agree'))
    GROUP BY ALL
),
boot AS (
    SELECT model, variant, space, ci95(list(agree ORDER BY unit), list(1.0::DOUBLE ORDER BY unit)) AS ci
    FROM per_item GROUP BY ALL
)
SELECT b.model, b.variant, v.label, v.sort,
       CASE b.space WHEN 'probability' THEN 'top-1 token, full vocabulary'
                    ELSE 'argmax among the options' END AS measure,
       100 * b.ci.est AS agree_pct, 100 * b.ci.lo AS ci_lo, 100 * b.ci.hi AS ci_hi, b.ci.n::BIGINT AS n_prompts
FROM boot b JOIN variants v USING (variant)
ORDER BY b.model, v.sort, measure DESC
