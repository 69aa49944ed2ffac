-- Fig 4 · Layer-wise hierarchy when each sublayer is dropped alone (dense model, shared dense context).
-- Views: see prunescope/report/sources.py. Parameter: $temperature (probability space only).
-- One row per (model, source, sublayer, space, layer): the mean cosine between the dense residual stream
-- and the one with that single sublayer removed, with its min and max over prompts and decoding steps.
-- The paper's Qwen2.5-7B means (reports/paper_data) are rescaled from its 28 layers to this model's depth.
WITH ours AS (
    SELECT model, sublayer, space, layer,
           avg(value) AS mean, min(value) AS lo, max(value) AS hi, count(*) AS n
    FROM metrics
    WHERE probe = 'layerwise' AND mode = 'drop' AND variant = 'dense' AND metric = 'cos'
      AND space IN ('embedding', 'logit', 'probability')
      AND (temperature IS NULL OR temperature = $temperature)
    GROUP BY model, sublayer, space, layer
),
depth AS (SELECT model, max(layer) AS last_layer FROM ours GROUP BY model),
paper AS (
    SELECT d.model, p.sublayer, p.space, p.layer * d.last_layer / (SELECT max(layer) FROM paper_fig4) AS layer,
           p.cosine AS mean
    FROM paper_fig4 p CROSS JOIN depth d
    WHERE p.statistic = 'mean'
)
SELECT model, 'this run' AS source, sublayer, space, layer::DOUBLE AS layer, mean, lo, hi, n FROM ours
UNION ALL
SELECT model, 'paper (Qwen2.5-7B)' AS source, sublayer, space, layer, mean, NULL, NULL, NULL FROM paper
ORDER BY model, source DESC, sublayer, space, layer
