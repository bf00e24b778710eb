-- Interpretability mu per SAE (mean detection score over CONCEPT100) beside its trivial baselines: answering
-- "none" every time scores mu_if_none (10/14 = 0.714 under SAEBench's convention), "all" mu_if_all; the
-- balanced accuracy is 0.5 for any answer that ignores the windows. mu_by_act is the variant (random
-- windows judged by their own activation) beside its own "none" baseline; then the [C23] simulation score,
-- the toy-world check (Spearman of detection score vs ground-truth purity) and the judge's usage.
SELECT
    model,
    sae,
    architecture,
    target_l0,
    round(l0, 1)                         AS l0,
    round(mu, 3)                         AS mu,
    round(mu_always_no, 3)               AS mu_if_none,
    round(mu_always_yes, 3)              AS mu_if_all,
    round(mu_balanced, 3)                AS mu_balanced,
    round(mu_by_activation, 3)           AS mu_by_act,
    round(mu_by_activation_always_no, 3) AS mu_by_act_if_none,
    round(mu_simulation, 3)              AS mu_sim,
    round(purity_spearman, 2)            AS rho_purity,
    n_scored,
    n_too_few,
    judge_calls                          AS new_calls,
    judge_cached                         AS cached
FROM interpretability
ORDER BY model, is_baseline, architecture, level NULLS LAST, sae;
