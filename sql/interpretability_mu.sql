-- mu per dictionary kind: each architecture across its sparsity levels (densest first, with their achieved
-- and target L0), then the [C23] baselines; mu_if_none is what answering "none" every time scores.
SELECT
    model,
    architecture,
    round(avg(mu), 3)                                   AS mean_mu,
    round(avg(mu_always_no), 3)                         AS mu_if_none,
    round(avg(mu_balanced), 3)                          AS mean_balanced,
    list(round(mu, 3) ORDER BY l0 DESC)                 AS mu_dense_to_sparse,
    list(round(l0, 1) ORDER BY l0 DESC)                 AS l0,
    list(target_l0 ORDER BY l0 DESC)                    AS target_l0
FROM interpretability
GROUP BY model, architecture, is_baseline
ORDER BY model, is_baseline, architecture;
