-- validity_truth: per SAE of a trained model (no baselines, no oracles, no control twins) and per group of latents
-- (all; single_word: the current token's identity explains half or more of the latent's activation variance on
-- held-out tokens, latent_stats' eta squared, so a judge that reads words is near-circular there; other: the
-- contextual rest), each instrument beside its judge-free truth, both averaged over the same latents, for
-- instrument_validity:
--   mu, mu_balanced, mu_simulation and true_interpretability over the CONCEPT100 latents;
--   g, g_lift (g - g_unsteered) and true_steerability over the steered latents that have a truth;
--   g_dtc (a per-SAE selection, not a mean over latents) in group all only.
WITH saes AS (
    SELECT model, sae, g_dtc FROM sae_summary WHERE NOT is_baseline AND control_of IS NULL
),
groups AS (SELECT unnest(['all', 'single_word', 'other']) AS latents),
scored AS (
    SELECT a.model, a.sae, a.latent, a.detection_score, a.detection_balanced, a.simulation_score,
           t.true_interpretability, NOT l.contextual AS single_word
    FROM autointerp a
    JOIN true_interpretability t USING (model, sae, latent)
    JOIN latent_stats l USING (model, sae, latent)
    JOIN saes USING (model, sae)
    WHERE a.concept100 AND t.true_interpretability IS NOT NULL
),
steered AS (
    SELECT c.model, c.sae, c.latent, c.test_hm, c.test_hm - c.unsteered_test_hm AS lift, s.rise_test,
           NOT l.contextual AS single_word
    FROM steering_concepts c
    JOIN true_steerability s USING (model, sae, latent)
    JOIN latent_stats l USING (model, sae, latent)
    JOIN saes USING (model, sae)
    WHERE s.rise_test IS NOT NULL
),
interp AS (
    SELECT model, sae, g.latents, avg(detection_score) AS mu, avg(detection_balanced) AS mu_balanced,
           avg(simulation_score) AS mu_simulation, avg(true_interpretability) AS true_interpretability
    FROM scored CROSS JOIN groups g
    WHERE g.latents = 'all' OR (g.latents = 'single_word') = single_word
    GROUP BY ALL
),
steer AS (
    SELECT model, sae, g.latents, avg(test_hm) AS g, avg(lift) AS g_lift, avg(rise_test) AS true_steerability
    FROM steered CROSS JOIN groups g
    WHERE g.latents = 'all' OR (g.latents = 'single_word') = single_word
    GROUP BY ALL
)
SELECT model, sae, latents, j.judge_model, i.mu, i.mu_balanced, i.mu_simulation, i.true_interpretability,
       s.g, s.g_lift, CASE WHEN latents = 'all' THEN saes.g_dtc END AS g_dtc, s.true_steerability
FROM interp i FULL JOIN steer s USING (model, sae, latents) JOIN saes USING (model, sae)
JOIN interpretability j USING (model, sae)
ORDER BY model, latents, sae;
