-- Figs 7, 12 · Generation divergence: the dense model and each variant decode the same prompts; per step,
-- the final (post-norm) hidden state h, the logits z and the probabilities p of the two are compared.
-- free: both run free with the same seed; forced: the variant is teacher-forced on the dense tokens, so
-- only the per-step error remains (the gap between the two is the accumulated error).
-- Views: see prunescope/report/sources.py. Parameter: $temperature (probability space only).
-- One row per (model, variant, mode, quantity, step): the mean over prompts that reached that step.
WITH quantity(panel_order, panel, space, metric) AS (
    VALUES (1, 'cos of final hidden states h', 'embedding', 'cos'),
           (2, 'cos of logits z', 'logit', 'cos'),
           (3, 'cos of probabilities p', 'probability', 'cos'),
           (4, 'KL(p_dense || p_variant), nats', 'probability', 'kl'),
           (5, 'RMS Δz, logit units', 'probability', 'rms_dz')
)
SELECT m.model, m.variant, v.label, v.sort, m.mode, q.panel_order, q.panel, m.step,
       avg(m.value) AS value, count(*) AS n_prompts
FROM metrics m
JOIN variants v USING (variant)
JOIN quantity q ON m.space = q.space AND m.metric = q.metric
WHERE m.probe = 'generation' AND m.mode IN ('free', 'forced')
  AND (m.temperature IS NULL OR m.temperature = $temperature)
GROUP BY m.model, m.variant, v.label, v.sort, m.mode, q.panel_order, q.panel, m.step
ORDER BY m.model, v.sort, m.mode, q.panel_order, m.step
