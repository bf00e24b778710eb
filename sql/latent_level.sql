-- latent_level: per model, over the steered latents of its SAEs (no baselines, no control twins), the Pearson r of
-- each latent's detection score (the unit of mu) with its test-half steering score (the unit of g), with the
-- same prompts' unsteered score, and with what steering adds; 95% Fisher-z intervals. An SAE's mu and g are means
-- over overlapping latents, so a latent-level r that the unsteered score carries shows up between SAEs as well.
WITH units AS (
    SELECT c.model, a.detection_score AS mu, c.test_hm AS g, c.unsteered_test_hm AS g_unsteered,
           c.test_hm - c.unsteered_test_hm AS g_lift
    FROM steering_concepts c
    JOIN autointerp a USING (model, sae, latent)
    JOIN sae_summary s USING (model, sae)
    WHERE s.control_of IS NULL AND NOT s.is_baseline
      AND a.detection_score IS NOT NULL AND c.test_hm IS NOT NULL AND c.unsteered_test_hm IS NOT NULL
),
r AS (
    SELECT model, count(*) AS latents,  -- r is NULL where a side is constant
           CASE WHEN stddev_samp(mu) > 0 AND stddev_samp(g) > 0 THEN corr(mu, g) END AS r_g,
           CASE WHEN stddev_samp(mu) > 0 AND stddev_samp(g_unsteered) > 0 THEN corr(mu, g_unsteered) END
               AS r_g_unsteered,
           CASE WHEN stddev_samp(mu) > 0 AND stddev_samp(g_lift) > 0 THEN corr(mu, g_lift) END AS r_g_lift
    FROM units GROUP BY model
)
SELECT model, latents, 'g' AS score, r_g AS r FROM r
UNION ALL SELECT model, latents, 'g_unsteered', r_g_unsteered FROM r
UNION ALL SELECT model, latents, 'g - g_unsteered', r_g_lift FROM r
ORDER BY model, score;
