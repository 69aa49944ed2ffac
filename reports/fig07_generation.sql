-- Fig 7 · Generation divergence: the dense model and each variant decode the same prompts; per step,
-- the final (post-norm) hidden state h, the logits z and the probabilities p of the two are compared.
-- free: both run free with the same seed; forced: the variant is teacher-forced on the dense tokens, so
-- only the per-step error remains (the gap between the two is the accumulated error).
-- Views: see prunescope/report/sources.py. Parameter: $temperature (probability space only).
-- One row per (model, variant, mode, quantity, step): the mean over the prompts that reached that step, with
-- its 95 % interval (bootstrap over those prompts).
WITH quantity(panel_order, panel, space, metric) AS (
    VALUES (1, 'cos of final hidden states h', 'embedding', 'cos'),
           (2, 'cos of logits z', 'logit', 'cos'),
           (3, 'cos of probabilities p', 'probability', 'cos'),
           (4, 'KL(p_dense || p_variant), nats', 'probability', 'kl'),
           (5, 'RMS Δz, logit units', 'probability', 'rms_dz')
),
boot AS (
    SELECT m.model, m.variant, m.mode, q.panel_order, q.panel, m.step,
           ci95(list(m.value ORDER BY m.probe_set, m.prompt_id), list(1.0::DOUBLE ORDER BY m.probe_set, m.prompt_id)) AS ci
    FROM metrics m
    JOIN quantity q ON m.space = q.space AND m.metric = q.metric
    WHERE m.probe = 'generation' AND m.mode IN ('free', 'forced')
      AND (m.temperature IS NULL OR m.temperature = $temperature)
    GROUP BY m.model, m.variant, m.mode, q.panel_order, q.panel, m.step
)
SELECT b.model, b.variant, v.label, v.sort, b.mode, b.panel_order, b.panel, b.step, b.ci.est AS value,
       b.ci.lo AS ci_lo, b.ci.hi AS ci_hi, b.ci.n::BIGINT AS n_prompts
FROM boot b JOIN variants v USING (variant)
ORDER BY b.model, v.sort, b.mode, b.panel_order, b.step
