-- A steered answer that stays on its instruction and carries the concept: per trained model, the test generation
-- with the best ratings (concept and instruction both rated, then the harmonic mean) at its concept's dev-chosen
-- factor, among concepts the autointerp explanation names as a topic or a sentiment by its words alone (not a
-- function-word group, not a context) and instructions whose unsteered answer does not carry the concept; beside it,
-- the unsteered answer to the same prompt.
WITH chosen AS (
    SELECT s.model, s.sae, s.latent, s.factor, s.instruction_id, s.concept_rating, s.instruct_rating,
           s.fluency_rating, s.hm, c.concept
    FROM steering s
    JOIN steering_concepts c ON c.model = s.model AND c.sae = s.sae AND c.latent = s.latent
                            AND c.best_factor = s.factor
    JOIN sae_summary m ON m.model = s.model AND m.sae = s.sae
    WHERE s.split = 'test' AND m.control_of IS NULL AND NOT m.is_baseline AND c.concept LIKE 'concept %'
      AND NOT regexp_matches(c.concept, '^concept (determiners|prepositions|punctuation|names) ')
      AND NOT regexp_matches(c.concept, ' (in text about|in positive text|in negative text|after) ')
      AND s.concept_rating > 0 AND s.instruct_rating > 0
),
unsteered AS (
    SELECT model, sae, latent, instruction_id, concept_rating, hm FROM steering WHERE factor = 0
),
ranked AS (
    SELECT ch.*, row_number() OVER (PARTITION BY ch.model
                                    ORDER BY ch.hm DESC, ch.concept_rating DESC, ch.sae, ch.latent, ch.instruction_id
                                    ) AS pick
    FROM chosen ch
    JOIN unsteered u USING (model, sae, latent, instruction_id)
    WHERE u.concept_rating = 0
)
SELECT r.model, r.sae, r.latent, r.concept, g.instruction, r.factor, g0.generation AS unsteered, g.generation AS steered,
       r.concept_rating, r.instruct_rating, r.fluency_rating, r.hm
FROM ranked r
JOIN steering_generations g USING (model, sae, latent, factor, instruction_id)
JOIN steering_generations g0 ON g0.model = r.model AND g0.sae = r.sae AND g0.latent = r.latent
                            AND g0.instruction_id = r.instruction_id AND g0.factor = 0
WHERE r.pick = 1
ORDER BY r.model;
