-- Where the theory holds · the rows that prunescope.report.regime bins: for every (layer, sublayer, prompt,
-- decoding step) of the drop-mode layer-wise probe (each sublayer of the dense model dropped alone), the
-- measured deviation and its second-order estimate for
--   Theorem 2: 1 − cos(p, q)  vs  cos_estimate = Var_r(Δz)/(2T²), r = p²/Σp²;
--   Theorem 3: KL(p‖q)        vs  kl_estimate  = Var_p(Δz)/(2T²);
-- and the perturbation size both expansions are in, spread = sqrt(var_uniform)/T: the standard deviation of
-- Δz/T over the whole vocabulary (shift-invariant, as the softmax is). The expansion is of e^{Δz_i/T} token by
-- token, so every token's shift must be small, not only the p-weighted ones: a near one-hot p with a large
-- Δz in its tail has a small p-weighted spread and a poor estimate. var_uniform is T-independent and stored
-- once (temperature null). Views: see prunescope/report/sources.py. Parameter: $temperature.
WITH pairs AS (
    SELECT model, probe_set, prompt_id, step, layer, sublayer,
           max(value) FILTER (WHERE metric = 'one_minus_cos') AS one_minus_cos,
           max(value) FILTER (WHERE metric = 'cos_estimate') AS cos_estimate,
           max(value) FILTER (WHERE metric = 'kl') AS kl,
           max(value) FILTER (WHERE metric = 'kl_estimate') AS kl_estimate,
           sqrt(max(value) FILTER (WHERE metric = 'var_uniform')) / $temperature AS spread
    FROM metrics
    WHERE probe = 'layerwise' AND mode = 'drop' AND variant = 'dense' AND space = 'probability'
      AND ((temperature = $temperature AND metric IN ('one_minus_cos', 'cos_estimate', 'kl', 'kl_estimate'))
           OR (temperature IS NULL AND metric = 'var_uniform'))
    GROUP BY model, probe_set, prompt_id, step, layer, sublayer
)
SELECT model, 'Theorem 2 · 1 − cos p' AS theorem, probe_set, prompt_id, step, layer, sublayer,
       one_minus_cos AS measured, cos_estimate AS estimate, spread
FROM pairs WHERE one_minus_cos IS NOT NULL AND cos_estimate IS NOT NULL AND spread IS NOT NULL
UNION ALL
SELECT model, 'Theorem 3 · KL' AS theorem, probe_set, prompt_id, step, layer, sublayer, kl AS measured,
       kl_estimate AS estimate, spread
FROM pairs WHERE kl IS NOT NULL AND kl_estimate IS NOT NULL AND spread IS NOT NULL
ORDER BY model, theorem, layer, sublayer, probe_set, prompt_id, step
