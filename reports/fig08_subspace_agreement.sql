-- Fig 8 · Agreement with the dense model on multiple-choice prompts: how often the variant's top-1 token over
-- the full vocabulary is the dense model's, against how often its argmax among the option tokens is.
-- Views: see prunescope/report/sources.py. Parameter: $temperature (argmaxes do not depend on it).
-- One row per (model, variant, measure): agreement in percent over all multiple-choice prompts.
SELECT m.model, m.variant, v.label, v.sort,
       CASE m.space WHEN 'probability' THEN 'top-1 token, full vocabulary'
                    ELSE 'argmax among the options' END AS measure,
       100 * avg(m.value) AS agree_pct, count(*) AS n_prompts
FROM metrics m JOIN variants v USING (variant)
WHERE m.probe = 'subspace' AND m.temperature = $temperature
  AND ((m.space = 'probability' AND m.metric = 'top1_agree') OR (m.space = 'subspace' AND m.metric = 'argmax_agree'))
GROUP BY m.model, m.variant, v.label, v.sort, m.space
ORDER BY m.model, v.sort, measure DESC
