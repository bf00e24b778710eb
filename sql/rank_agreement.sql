-- Kendall tau-b of each comparison, overall and within each architecture, sparsity level and model (the shape
-- of [W25] Tables 1 and 3), exact from the kendall_tau_b macro; CIs and p-values are the rank_agreement asset's.
SELECT
    grp.comparison,
    grp.grouping,
    grp.value          AS "group",
    n,
    n * (n - 1) // 2   AS pairs,
    tau_b,
    null_reason
FROM kendall_tau_b('rank_groups')
WHERE grp.grouping NOT LIKE 'psi_%'
ORDER BY grp.comparison, grp.grouping != 'overall', grp.grouping, grp.value;
