-- Fig 13 · Layer-wise hierarchy when each sublayer is replaced alone by its intra-layer-pruned version
-- (pruned mode: the pruned sublayer runs on the dense input, with its own KV cache of the dense context).
-- Views: see prunescope/report/sources.py. Parameter: $temperature (probability space only).
-- One row per (model, variant, sublayer, space, layer): mean cosine, min and max over prompts and steps.
SELECT m.model, m.variant, v.label, v.sort, m.sublayer, m.space, m.layer,
       avg(m.value) AS mean, min(m.value) AS lo, max(m.value) AS hi, count(*) AS n
FROM metrics m JOIN variants v USING (variant)
WHERE m.probe = 'layerwise' AND m.mode = 'pruned' AND v.kind = 'prune' AND m.metric = 'cos'
  AND m.space IN ('embedding', 'logit', 'probability')
  AND (m.temperature IS NULL OR m.temperature = $temperature)
GROUP BY m.model, m.variant, v.label, v.sort, m.sublayer, m.space, m.layer
ORDER BY m.model, v.sort, m.sublayer, m.space, m.layer
