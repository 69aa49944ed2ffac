-- Fig 11 · Temperature ablation: probability-space 1 − cos and KL against their estimates along the decoding,
-- at the middle attention layer dropped alone, for every temperature the metrics stage computed.
-- Unlike the paper, all temperatures share the one dense trajectory (sampled at the probe temperature):
-- only the softmax temperature of the comparison changes.
-- Views: see prunescope/report/sources.py. One row per (model, temperature, quantity, series, step): the
-- mean over prompts with its 95 % interval (bootstrap over prompts).
WITH quantity(panel_order, panel, series, metric) AS (
    VALUES (1, 'probability 1 − cos (Theorem 2)', 'measured', 'one_minus_cos'),
           (1, 'probability 1 − cos (Theorem 2)', 'estimate', 'cos_estimate'),
           (2, 'KL(p || q), nats (Theorem 3)', 'measured', 'kl'),
           (2, 'KL(p || q), nats (Theorem 3)', 'estimate', 'kl_estimate')
),
chosen AS (
    SELECT model, (max(layer) + 1) // 2 AS layer
    FROM metrics WHERE probe = 'layerwise' AND mode = 'drop' AND variant = 'dense'
    GROUP BY model
),
boot AS (
    SELECT m.model, m.layer, m.temperature, q.panel_order, q.panel, q.series, m.step,
           ci95(list(m.value ORDER BY m.probe_set, m.prompt_id), list(1.0::DOUBLE ORDER BY m.probe_set, m.prompt_id)) AS ci
    FROM metrics m
    JOIN chosen c ON m.model = c.model AND m.layer = c.layer
    JOIN quantity q ON m.metric = q.metric
    WHERE m.probe = 'layerwise' AND m.mode = 'drop' AND m.variant = 'dense' AND m.sublayer = 'attn'
      AND m.space = 'probability' AND m.temperature IS NOT NULL
    GROUP BY m.model, m.layer, m.temperature, q.panel_order, q.panel, q.series, m.step
)
SELECT model, layer, temperature, panel_order, panel, series, step, ci.est AS value, ci.lo AS ci_lo, ci.hi AS ci_hi,
       ci.n::BIGINT AS n_prompts
FROM boot
ORDER BY model, temperature, panel_order, series, step
