-- Toy-world truth: mean over ground-truth concepts of the best latent's F1 ("fires" = code > 0), per SAE and
-- concept kind, and the threshold-swept variant (fires = code above a fraction of the latent's max).
SELECT
    c.model,
    c.sae,
    round(avg(best_f1), 3)                                   AS mean_f1,
    round(avg(best_f1_swept), 3)                             AS mean_f1_swept,
    round(avg(best_f1) FILTER (WHERE kind = 'topic'), 3)     AS topic_f1,
    round(avg(best_f1) FILTER (WHERE kind = 'sentiment'), 3) AS sentiment_f1,
    round(avg(best_f1) FILTER (WHERE kind = 'role'), 3)      AS role_f1
FROM concept_recovery AS c
JOIN sae_metrics AS m USING (model, sae)
GROUP BY c.model, c.sae, m.architecture, m.level
ORDER BY c.model, m.architecture, m.level NULLS LAST;
