-- Does a cheap probe predict task damage? (beyond the paper) · Across a model's variants:
-- - the teacher-forced KL(p_dense‖p_variant) of the generation probe (one forward per step, no sampling;
--   mean over prompts and steps, 95 % interval from a bootstrap over prompts) against the relative drop of
--   the generative tasks, (dense − variant)/dense averaged over them (95 % interval: paired bootstrap over
--   items, within each task);
-- - the option-argmax agreement of the subspace probe (one forward per item; percent of items, bootstrap
--   interval over items) against the relative drop of the multiple-choice tasks.
-- Spearman's rank correlation rho over the variants (ties get average ranks) and their number, per panel.
-- Views: see prunescope/report/sources.py. Parameter: $temperature (KL).
WITH kl_prompt AS (
    SELECT model, variant, probe_set || ':' || prompt_id AS unit, sum(value) AS total, count(*)::DOUBLE AS rows
    FROM metrics
    WHERE probe = 'generation' AND mode = 'forced' AND space = 'probability' AND metric = 'kl'
      AND temperature = $temperature
    GROUP BY ALL
),
agree_item AS (
    SELECT model, variant, probe_set || ':' || prompt_id AS unit, avg(value) AS agree
    FROM metrics
    WHERE probe = 'subspace' AND space = 'subspace' AND metric = 'argmax_agree'
      AND (temperature IS NULL OR temperature = $temperature)
    GROUP BY ALL
),
probe AS (
    SELECT model, variant, 1 AS panel_order, 'teacher-forced KL, nats' AS probe_title, 'generative' AS task_kind,
           ci95(list(total ORDER BY unit), list(rows ORDER BY unit)) AS ci
    FROM kl_prompt GROUP BY model, variant
    UNION ALL
    SELECT model, variant, 2, 'option-argmax agreement, %', 'multiple_choice',
           ci95(list(100 * agree ORDER BY unit), list(1.0::DOUBLE ORDER BY unit))
    FROM agree_item GROUP BY model, variant
),
points AS (
    SELECT p.model, p.variant, p.panel_order, p.probe_title, p.task_kind, p.ci.est AS probe_value,
           p.ci.lo AS probe_lo, p.ci.hi AS probe_hi, p.ci.n::BIGINT AS probe_n,
           -c.rel_change AS drop, -c.rel_hi AS drop_lo, -c.rel_lo AS drop_hi, c.n_tasks, c.n_items
    FROM probe p JOIN kind_changes c ON c.model = p.model AND c.variant = p.variant AND c.task_kind = p.task_kind
    WHERE p.ci.est IS NOT NULL AND c.rel_change IS NOT NULL
),
ranked AS (
    -- rank(asc) - rank(desc) is twice the average rank of tied values minus a constant: correlating it
    -- gives Spearman's rho with ties handled the usual way
    SELECT *,
           rank() OVER (PARTITION BY model, panel_order ORDER BY probe_value)
             - rank() OVER (PARTITION BY model, panel_order ORDER BY probe_value DESC) AS probe_rank,
           rank() OVER (PARTITION BY model, panel_order ORDER BY drop)
             - rank() OVER (PARTITION BY model, panel_order ORDER BY drop DESC) AS drop_rank
    FROM points
),
fit AS (  -- rho is null when the probe or the drop does not vary over the variants
    SELECT model, panel_order, CASE WHEN isnan(r) THEN NULL ELSE r END AS rho, n_variants
    FROM (SELECT model, panel_order, corr(probe_rank, drop_rank) AS r, count(*) AS n_variants
          FROM ranked GROUP BY model, panel_order)
)
SELECT r.model, r.variant, v.label, v.kind, v.sort, r.panel_order, r.probe_title, r.task_kind, r.probe_value,
       r.probe_lo, r.probe_hi, r.probe_n, r.drop, r.drop_lo, r.drop_hi, r.n_tasks, r.n_items, f.rho, f.n_variants,
       r.probe_title || ' vs ' || replace(r.task_kind, '_', ' ') || ' drop: Spearman ρ = '
         || coalesce(printf('%.2f', f.rho), 'undefined') || ' (' || f.n_variants || ' variants)' AS panel
FROM ranked r JOIN fit f USING (model, panel_order) JOIN variants v USING (variant)
ORDER BY r.model, r.panel_order, v.sort
