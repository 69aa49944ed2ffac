-- Fig 13 · Layer-wise hierarchy when each sublayer is replaced alone by its compressed version: intra-layer
-- pruned or weight-quantised (pruned mode: the compressed sublayer runs on the dense input, with its own KV
-- cache of the dense context).
-- Views: see prunescope/report/sources.py. Parameter: $temperature (probability space only).
-- One row per (model, variant, sublayer, space, layer): mean cosine over prompts and steps, its 95 %
-- interval (bootstrap over prompts), min and max.
WITH per_prompt AS (
    SELECT m.model, m.variant, m.sublayer, m.space, m.layer, m.probe_set || ':' || m.prompt_id AS unit,
           sum(m.value) AS total, count(*)::DOUBLE AS rows, min(m.value) AS min_value, max(m.value) AS max_value
    FROM metrics m JOIN variants v USING (variant)
    WHERE m.probe = 'layerwise' AND m.mode = 'pruned' AND v.kind IN ('prune', 'quant') AND m.metric = 'cos'
      AND m.space IN ('embedding', 'logit', 'probability')
      AND (m.temperature IS NULL OR m.temperature = $temperature)
    GROUP BY ALL
),
ours AS (
    SELECT model, variant, sublayer, space, layer, ci95(list(total ORDER BY unit), list(rows ORDER BY unit)) AS ci,
           min(min_value) AS min_value, max(max_value) AS max_value, sum(rows)::BIGINT AS n, count(*) AS n_prompts
    FROM per_prompt GROUP BY ALL
)
SELECT o.model, o.variant, v.label, v.sort, o.sublayer, o.space, o.layer, o.ci.est AS mean, o.ci.lo AS ci_lo,
       o.ci.hi AS ci_hi, o.min_value, o.max_value, o.n, o.n_prompts
FROM ours o JOIN variants v USING (variant)
ORDER BY o.model, v.sort, o.sublayer, o.space, o.layer
