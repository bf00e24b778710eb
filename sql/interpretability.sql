-- Interpretability mu per SAE (mean detection score over CONCEPT100) and the [C23] simulation score, with the
-- ground-truth check on the toy world (Spearman of detection score vs concept purity) and the judge's usage.
SELECT
    model,
    sae,
    architecture,
    round(l0, 1)                AS l0,
    round(mu, 3)                AS mu,
    round(mu_simulation, 3)     AS mu_sim,
    round(purity_spearman, 2)   AS rho_purity,
    n_scored,
    n_too_few,
    judge_calls                 AS new_calls,
    judge_cached                AS cached
FROM interpretability
ORDER BY model, is_baseline, architecture, level NULLS LAST, sae;
