-- The contextual share of each model's CONCEPT100 latents (the token explains under half of a latent's variance):
-- mean over its SAEs, baselines and oracles apart, a control twin beside its trained model.
SELECT model, coalesce(control_of, '') AS control_of,
       CASE WHEN architecture = 'oracle' THEN 'oracles' WHEN is_baseline THEN 'baselines' ELSE 'SAEs' END AS kind,
       count(*) AS dictionaries,
       round(avg(contextual_share), 3) AS mean_share, round(min(contextual_share), 3) AS min_share,
       round(max(contextual_share), 3) AS max_share
FROM sae_summary
GROUP BY model, control_of, kind
ORDER BY coalesce(control_of, model), control_of NULLS FIRST, kind = 'oracles', kind = 'baselines';
