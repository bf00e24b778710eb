-- What steering adds by the kind of explanation a steered latent got: per trained model (its SAEs; no baselines,
-- no control twins), the steered concepts grouped by the shape of their autointerp explanation (a topic or
-- sentiment word group, a function-word group, names, or quoted tokens), with the mean test-half steering
-- score, the same prompts' unsteered score, and their difference with its standard error over concepts.
WITH concepts AS (
    SELECT c.model, c.test_hm, c.unsteered_test_hm,
           CASE WHEN regexp_matches(c.concept, '^concept (determiners|prepositions|punctuation) ') THEN 'function-word group'
                WHEN regexp_matches(c.concept, '^concept names ') THEN 'names'
                WHEN c.concept LIKE 'concept %' THEN 'topic or sentiment group'
                ELSE 'quoted tokens' END AS explanation
    FROM steering_concepts c
    JOIN sae_summary s USING (model, sae)
    WHERE s.control_of IS NULL AND NOT s.is_baseline AND c.test_hm IS NOT NULL AND c.unsteered_test_hm IS NOT NULL
)
SELECT model, explanation, count(*) AS concepts, avg(test_hm) AS g, avg(unsteered_test_hm) AS g_unsteered,
       avg(test_hm - unsteered_test_hm) AS lift, stddev_samp(test_hm - unsteered_test_hm) / sqrt(count(*)) AS lift_se
FROM concepts
GROUP BY ALL
ORDER BY model, explanation;
