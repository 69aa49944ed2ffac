-- Fig 4 · Layer-wise hierarchy when each sublayer is dropped alone (dense model, shared dense context).
-- Views: see prunescope/report/sources.py. Parameter: $temperature (probability space only).
-- One row per (model, source, sublayer, space, layer): the mean cosine between the dense residual stream
-- and the one with that single sublayer removed over prompts and decoding steps, its 95 % interval
-- (bootstrap over prompts: ci95 of each prompt's sum and row count) and its min and max.
-- The paper's Qwen2.5-7B means (reports/paper_data) are rescaled from its 28 layers to this model's depth.
WITH per_prompt AS (
    SELECT model, sublayer, space, layer, probe_set || ':' || prompt_id AS unit,
           sum(value) AS total, count(*)::DOUBLE AS rows, min(value) AS min_value, max(value) AS max_value
    FROM metrics
    WHERE probe = 'layerwise' AND mode = 'drop' AND variant = 'dense' AND metric = 'cos'
      AND space IN ('embedding', 'logit', 'probability')
      AND (temperature IS NULL OR temperature = $temperature)
    GROUP BY ALL
),
ours AS (
    SELECT model, sublayer, space, layer, ci95(list(total ORDER BY unit), list(rows ORDER BY unit)) AS ci,
           min(min_value) AS min_value, max(max_value) AS max_value, sum(rows)::BIGINT AS n, count(*) AS n_prompts
    FROM per_prompt GROUP BY ALL
),
depth AS (SELECT model, max(layer) AS last_layer FROM ours GROUP BY model),
paper AS (
    SELECT d.model, p.sublayer, p.space, p.layer * d.last_layer / (SELECT max(layer) FROM paper_fig4) AS layer,
           p.cosine AS mean
    FROM paper_fig4 p CROSS JOIN depth d
    WHERE p.statistic = 'mean'
)
SELECT model, 'this run' AS source, sublayer, space, layer::DOUBLE AS layer, ci.est AS mean, ci.lo AS ci_lo,
       ci.hi AS ci_hi, min_value, max_value, n, n_prompts
FROM ours
UNION ALL
SELECT model, 'paper (Qwen2.5-7B)' AS source, sublayer, space, layer, mean, NULL, NULL, NULL, NULL, NULL, NULL
FROM paper
ORDER BY model, source DESC, sublayer, space, layer
