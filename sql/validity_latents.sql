-- validity_latents: per latent of each SAE of a trained model (no baselines, oracles or control twins), every unit
-- an instrument or a truth averages, in long form, for the latent-disjoint half of instrument_validity:
--   mu (detection_score), mu_balanced, mu_simulation and true_interpretability over the CONCEPT100 latents with a
--   window truth; g (test_hm), g_lift and true_steerability over the steered latents with a truth.
-- single_word: the current token's identity explains half or more of the latent's held-out activation variance.
WITH saes AS (
    SELECT model, sae FROM sae_summary WHERE NOT is_baseline AND control_of IS NULL
),
scored AS (
    SELECT a.*, t.true_interpretability, NOT l.contextual AS single_word
    FROM autointerp a
    JOIN true_interpretability t USING (model, sae, latent)
    JOIN latent_stats l USING (model, sae, latent)
    JOIN saes USING (model, sae)
    WHERE a.concept100 AND t.true_interpretability IS NOT NULL
),
steered AS (
    SELECT c.*, s.rise_test, NOT l.contextual AS single_word
    FROM steering_concepts c
    JOIN true_steerability s USING (model, sae, latent)
    JOIN latent_stats l USING (model, sae, latent)
    JOIN saes USING (model, sae)
    WHERE s.rise_test IS NOT NULL
)
SELECT model, sae, latent, single_word, 'mu' AS measure, detection_score AS value FROM scored
UNION ALL SELECT model, sae, latent, single_word, 'mu_balanced', detection_balanced FROM scored
UNION ALL SELECT model, sae, latent, single_word, 'mu_simulation', simulation_score FROM scored
UNION ALL SELECT model, sae, latent, single_word, 'true_interpretability', true_interpretability FROM scored
UNION ALL SELECT model, sae, latent, single_word, 'g', test_hm FROM steered
UNION ALL SELECT model, sae, latent, single_word, 'g_lift', test_hm - unsteered_test_hm FROM steered
UNION ALL SELECT model, sae, latent, single_word, 'true_steerability', rise_test FROM steered
ORDER BY model, sae, measure, latent;
