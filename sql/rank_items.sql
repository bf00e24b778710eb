-- The items behind each tau-b of sql/rank_agreement.sql, for the permutation tests and bootstrap intervals.
-- Both lists are sorted by (x, y), so the i-th x and the i-th y are one SAE's pair.
SELECT grp.comparison AS comparison, grp.grouping AS grouping, grp.value AS "group",
       list(x ORDER BY x, y) AS x, list(y ORDER BY x, y) AS y
FROM rank_groups
WHERE grp.grouping NOT LIKE 'psi_%'
GROUP BY ALL;
