-- control_units: for each dictionary of a trained model and the same dictionary of its control twin,
-- the units each score averages, one row per (dictionary, score): mu, mu_balanced and mu_simulation over the
-- CONCEPT100 latents; over the steered concepts g (test-half HM at the dev-chosen factor), g_minus_unsteered (that HM minus
-- the same prompts' unsteered HM) and concept_rating (the judge's concept rating alone, 0-2); g_dtc over the chosen
-- set's concepts; concept_f1 over the toy world's concepts. l0_trained / l0_twin: each side's held-out L0. Each list is sorted by its unit, so same_units says whether
-- both sides hold the same units in the same order (the world's concepts do: they are resampled as pairs).
WITH pairs AS (
    SELECT twin.control_of AS model, twin.model AS control, twin.sae, twin.architecture, twin.is_baseline,
           twin.level, trained.sparsity_index, trained.l0 AS l0_trained, twin.l0 AS l0_twin
    FROM sae_summary twin
    JOIN sae_summary trained ON trained.model = twin.control_of AND trained.sae = twin.sae
),
units AS (
    SELECT model, sae, 'mu' AS metric, latent::VARCHAR AS unit, detection_score AS value
    FROM autointerp WHERE concept100
    UNION ALL SELECT model, sae, 'mu_balanced', latent::VARCHAR, detection_balanced FROM autointerp WHERE concept100
    UNION ALL SELECT model, sae, 'mu_simulation', latent::VARCHAR, simulation_score FROM autointerp WHERE concept100
    UNION ALL SELECT model, sae, 'g', latent::VARCHAR, test_hm FROM steering_concepts
    UNION ALL SELECT model, sae, 'g_minus_unsteered', latent::VARCHAR, test_hm - unsteered_test_hm
    FROM steering_concepts
    UNION ALL SELECT model, sae, 'concept_rating', latent::VARCHAR, test_concept FROM steering_concepts
    UNION ALL SELECT c.model, c.sae, 'g_dtc', c.latent::VARCHAR, c.test_hm
    FROM steering_concepts c JOIN selection s USING (model, sae)
    WHERE list_contains(s.chosen_latents, c.latent)
    UNION ALL SELECT model, sae, 'concept_f1', concept, best_f1 FROM concept_recovery
),
sides AS (
    SELECT model, sae, metric, list(value::DOUBLE ORDER BY unit) AS "values", list(unit ORDER BY unit) AS units
    FROM units GROUP BY ALL
)
SELECT p.*, t.metric, t."values" AS trained, coalesce(c."values", []) AS twin,
       coalesce(t.units = c.units, false) AS same_units
FROM pairs p
JOIN sides t ON t.model = p.model AND t.sae = p.sae
LEFT JOIN sides c ON c.model = p.control AND c.sae = p.sae AND c.metric = t.metric
ORDER BY p.model, p.is_baseline, p.architecture, p.sparsity_index, p.sae, t.metric;
