-- Figs 14–17 · Theorem estimate against measurement over every layer, sublayer, prompt and decoding step
-- (each sublayer dropped alone). Pearson r and Spearman's rank correlation rho are computed on all pairs
-- (the values span dozens of decades, so r is dominated by the largest ones and rho tells whether the
-- estimate orders the deviations right). The plot is a log–log density of the pairs in cells of 0.25
-- decades; values below 1e-8 (zero included) are put in the lowest cell, [1e-8, 10^-7.75).
-- Views: see prunescope/report/sources.py. Parameter: $temperature (probability space only).
-- One row per (model, quantity, cell) with the cell's count, plus the quantity's r, rho and pair count.
WITH quantity(panel_order, panel, space, measured, estimate) AS (
    VALUES (1, 'embedding 1 − cos (Theorem 1)', 'embedding', 'one_minus_cos', 'theorem1_estimate'),
           (2, 'logit 1 − cos (Theorem 1)', 'logit', 'one_minus_cos', 'theorem1_estimate'),
           (3, 'probability 1 − cos (Theorem 2)', 'probability', 'one_minus_cos', 'cos_estimate'),
           (4, 'KL(p || q) (Theorem 3)', 'probability', 'kl', 'kl_estimate')
),
pairs AS (
    SELECT m.model, q.panel_order, q.panel, m.probe_set, m.prompt_id, m.step, m.layer, m.sublayer,
           max(m.value) FILTER (WHERE m.metric = q.measured) AS measured,
           max(m.value) FILTER (WHERE m.metric = q.estimate) AS estimate
    FROM metrics m JOIN quantity q ON m.space = q.space AND m.metric IN (q.measured, q.estimate)
    WHERE m.probe = 'layerwise' AND m.mode = 'drop' AND m.variant = 'dense'
      AND (m.temperature IS NULL OR m.temperature = $temperature)
    GROUP BY m.model, q.panel_order, q.panel, m.probe_set, m.prompt_id, m.step, m.layer, m.sublayer
),
ranked AS (
    -- rank(asc) - rank(desc) is twice the average rank of tied values minus a constant: correlating it
    -- gives Spearman's rho with ties handled the usual way
    SELECT *,
           rank() OVER (PARTITION BY model, panel ORDER BY measured)
             - rank() OVER (PARTITION BY model, panel ORDER BY measured DESC) AS measured_rank,
           rank() OVER (PARTITION BY model, panel ORDER BY estimate)
             - rank() OVER (PARTITION BY model, panel ORDER BY estimate DESC) AS estimate_rank
    FROM pairs
),
fit AS (
    SELECT model, panel, corr(measured, estimate) AS r, corr(measured_rank, estimate_rank) AS rho,
           count(*) AS n_pairs
    FROM ranked GROUP BY model, panel
),
binned AS (
    SELECT model, panel_order, panel,
           floor(log10(greatest(estimate, 1e-8)) * 4) / 4 AS x_log,
           floor(log10(greatest(measured, 1e-8)) * 4) / 4 AS y_log, count(*) AS n
    FROM pairs
    GROUP BY ALL
)
SELECT b.model, b.panel_order, b.panel,
       b.panel || ': r = ' || coalesce(printf('%.2f', f.r), 'n/a') || ', ρ = ' || coalesce(printf('%.2f', f.rho), 'n/a')
         || ' (' || f.n_pairs || ' pairs)' AS label,
       f.r, f.rho, f.n_pairs, power(10, b.x_log) AS estimate_lo, power(10, b.x_log + 0.25) AS estimate_hi,
       power(10, b.y_log) AS measured_lo, power(10, b.y_log + 0.25) AS measured_hi, b.n
FROM binned b JOIN fit f USING (model, panel)
ORDER BY b.model, b.panel_order, b.x_log, b.y_log
