-- Axis-controlled agreement: psi_axis = the mean tau-b over groups of SAEs that differ only along
-- that axis; Psi = the mean of the psi that exist. With two models a model group holds 2 SAEs (< 3): psi_model
-- is null and Psi is the mean of the other two.
WITH psi AS (
    SELECT grp.comparison AS comparison, replace(grp.grouping, 'psi_', '') AS axis, avg(tau_b) AS psi,
           count(tau_b) AS groups, count(*) - count(tau_b) AS null_groups
    FROM kendall_tau_b('rank_groups')
    WHERE grp.grouping LIKE 'psi_%'
    GROUP BY ALL
)
SELECT comparison, axis, psi, groups, null_groups FROM psi
UNION ALL
SELECT comparison, 'Psi', avg(psi), count(psi), count(*) - count(psi) FROM psi GROUP BY comparison
ORDER BY comparison, axis = 'Psi', axis;
