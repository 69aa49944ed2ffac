-- Figs 5, 6, 16, 17 · Theory vs measurement along the decoding, at one layer (default: the middle layer,
-- (number of layers) // 2, e.g. 14 of 28 as in the paper's Fig 6), each sublayer dropped alone.
-- Views: see prunescope/report/sources.py. Parameter: $temperature (probability space only).
-- One row per (model, sublayer, quantity, series, step): the mean over prompts of the measured deviation
-- and of its Theorem estimate (Thm 1: |d_perp|^2 / (2|ref|^2); Thm 2: Var_r(dz)/(2T^2); Thm 3: Var_p(dz)/(2T^2)),
-- with its 95 % interval (bootstrap over prompts).
WITH quantity(panel_order, panel, series, space, metric) AS (
    VALUES (1, 'relative orthogonal energy |Δ⊥|²/|·|²', 'embedding h', 'embedding', 'orth_rel_sq'),
           (1, 'relative orthogonal energy |Δ⊥|²/|·|²', 'logit z', 'logit', 'orth_rel_sq'),
           (2, 'embedding 1 − cos (Theorem 1)', 'measured', 'embedding', 'one_minus_cos'),
           (2, 'embedding 1 − cos (Theorem 1)', 'estimate', 'embedding', 'theorem1_estimate'),
           (3, 'logit 1 − cos (Theorem 1)', 'measured', 'logit', 'one_minus_cos'),
           (3, 'logit 1 − cos (Theorem 1)', 'estimate', 'logit', 'theorem1_estimate'),
           (4, 'probability 1 − cos (Theorem 2)', 'measured', 'probability', 'one_minus_cos'),
           (4, 'probability 1 − cos (Theorem 2)', 'estimate', 'probability', 'cos_estimate'),
           (5, 'KL(p || q), nats (Theorem 3)', 'measured', 'probability', 'kl'),
           (5, 'KL(p || q), nats (Theorem 3)', 'estimate', 'probability', 'kl_estimate')
),
chosen AS (
    SELECT model, (max(layer) + 1) // 2 AS layer
    FROM metrics WHERE probe = 'layerwise' AND mode = 'drop' AND variant = 'dense'
    GROUP BY model
),
boot AS (
    SELECT m.model, m.layer, m.sublayer, q.panel_order, q.panel, q.series, m.step,
           ci95(list(m.value ORDER BY m.probe_set, m.prompt_id), list(1.0::DOUBLE ORDER BY m.probe_set, m.prompt_id)) AS ci
    FROM metrics m
    JOIN chosen c ON m.model = c.model AND m.layer = c.layer
    JOIN quantity q ON m.space = q.space AND m.metric = q.metric
    WHERE m.probe = 'layerwise' AND m.mode = 'drop' AND m.variant = 'dense'
      AND (m.temperature IS NULL OR m.temperature = $temperature)
    GROUP BY m.model, m.layer, m.sublayer, q.panel_order, q.panel, q.series, m.step
)
SELECT model, layer, sublayer, panel_order, panel, series, step, ci.est AS value, ci.lo AS ci_lo, ci.hi AS ci_hi,
       ci.n::BIGINT AS n_prompts
FROM boot
ORDER BY model, sublayer, panel_order, series, step
