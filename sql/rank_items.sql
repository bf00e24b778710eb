-- The items behind each tau-b of sql/rank_agreement.sql, for the permutation tests and bootstrap intervals.
SELECT grp.comparison AS comparison, grp.grouping AS grouping, grp.value AS "group", list(x) AS x, list(y) AS y
FROM rank_groups
WHERE grp.grouping NOT LIKE 'psi_%'
GROUP BY ALL;
