-- Trained models against their random-weights twins: per model and score, the mean over the SAE pairs
-- (the same variant on both), the mean paired difference with its 95% BCa interval (5 pairs or more), the pairs
-- each side wins with a two-sided sign test, and the AUROC (the chance a trained SAE outscores a twin SAE; 0.5
-- cannot tell them apart, 0 and 1 separate perfectly).
SELECT
    model,
    metric,
    n_pairs,
    round(trained, 3)     AS trained,
    round(twin, 3)        AS twin,
    round(difference, 3)  AS difference,
    round(ci_low, 3)      AS ci_low,
    round(ci_high, 3)     AS ci_high,
    trained_higher,
    twin_higher,
    round(sign_test_p, 3) AS sign_p,
    round(auroc, 2)       AS auroc
FROM control_separation
ORDER BY model = 'all models', model, abs(auroc - 0.5) DESC NULLS LAST, metric;
