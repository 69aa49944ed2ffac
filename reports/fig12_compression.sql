-- Fig 12 · Compression comparison: weight-only quantisation, intra-layer pruning and inter-layer dropping
-- side by side, free-running generation against the dense model, per decoding step (paper App. I, Fig 12:
-- cos h, cos z, cos p, RMS Δz = sqrt(mean_i Δz_i²), the uniform variance of Δz over the vocabulary, KL).
-- Views: see prunescope/report/sources.py. Parameter: $temperature (cos p and KL; the Δz statistics are in
-- logit units and do not depend on it).
-- One row per (model, variant, quantity, step): the mean over the prompts that reached that step, with its
-- 95 % interval (bootstrap over those prompts).
WITH quantity(panel_order, panel, space, metric) AS (
    VALUES (1, '(a) cos h', 'embedding', 'cos'),
           (2, '(b) cos z', 'logit', 'cos'),
           (3, '(c) cos p', 'probability', 'cos'),
           (4, '(d) RMS Δz', 'probability', 'rms_dz'),
           (5, '(e) uniform Var Δz', 'probability', 'var_uniform'),
           (6, '(f) KL(p_dense || p_variant)', 'probability', 'kl')
),
boot AS (
    SELECT m.model, m.variant, q.panel_order, q.panel, m.step,
           ci95(list(m.value ORDER BY m.probe_set, m.prompt_id), list(1.0::DOUBLE ORDER BY m.probe_set, m.prompt_id)) AS ci
    FROM metrics m
    JOIN quantity q ON m.space = q.space AND m.metric = q.metric
    WHERE m.probe = 'generation' AND m.mode = 'free'
      AND (m.temperature IS NULL OR m.temperature = $temperature)
    GROUP BY m.model, m.variant, q.panel_order, q.panel, m.step
)
SELECT b.model, b.variant, v.label, v.kind, v.sort, b.panel_order, b.panel, b.step, b.ci.est AS value,
       b.ci.lo AS ci_lo, b.ci.hi AS ci_hi, b.ci.n::BIGINT AS n_prompts
FROM boot b JOIN variants v USING (variant)
WHERE v.kind IN ('quant', 'prune', 'drop')
ORDER BY b.model, b.panel_order, v.sort, b.step
