-- mu per dictionary kind: each architecture across its sparsity levels (densest first, with their L0),
-- then the [C23] baselines.
SELECT
    model,
    architecture,
    round(avg(mu), 3)                                   AS mean_mu,
    list(round(mu, 3) ORDER BY l0 DESC)                 AS mu_dense_to_sparse,
    list(round(l0, 1) ORDER BY l0 DESC)                 AS l0
FROM interpretability
GROUP BY model, architecture, is_baseline
ORDER BY model, is_baseline, architecture;
