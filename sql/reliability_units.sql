-- reliability_units: the units every SAE-level instrument averages, per SAE of a trained model (no baselines, no
-- control twins): the rank analysis' items. mu and mu_simulation over the CONCEPT100 latents, g (test-half HM at the
-- dev-chosen factor) and g_lift (that HM minus the same prompts' unsteered HM) over the steered concepts; on the toy
-- world true_interpretability over the CONCEPT100 latents and true_steerability over the steered ones. Selection
-- (g_dtc, gain) reads its pool from sql/reliability_pool.sql.
WITH items AS (
    SELECT model, sae FROM sae_summary WHERE control_of IS NULL AND NOT is_baseline
),
units AS (
    SELECT model, sae, 'mu' AS instrument, latent, detection_score AS value FROM autointerp WHERE concept100
    UNION ALL SELECT model, sae, 'mu_balanced', latent, detection_balanced FROM autointerp WHERE concept100
    UNION ALL SELECT model, sae, 'mu_simulation', latent, simulation_score FROM autointerp WHERE concept100
    UNION ALL SELECT model, sae, 'g', latent, test_hm FROM steering_concepts
    UNION ALL SELECT model, sae, 'g_lift', latent, test_hm - unsteered_test_hm FROM steering_concepts
    UNION ALL SELECT model, sae, 'true_interpretability', latent, true_interpretability
              FROM true_interpretability WHERE concept100
    UNION ALL SELECT model, sae, 'true_steerability', latent, rise_test FROM true_steerability
)
SELECT model, instrument, sae, list(value::DOUBLE ORDER BY latent) AS "values"
FROM units JOIN items USING (model, sae)
WHERE value IS NOT NULL
GROUP BY ALL
ORDER BY model, instrument, sae;
