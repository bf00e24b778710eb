-- kendall_tau_b(tbl): exact Kendall tau-b per group, tie-corrected, as [W25] use it:
--   tau_b = (P - Q) / sqrt((n0 - n1) (n0 - n2))
-- over the pairs of rows of one group (n0 pairs, P concordant, Q discordant, n1 tied in x, n2 tied in y).
-- `tbl` names a table or view with columns grp, x, y; rows with a null x or y are left out.
-- One row per grp: n, concordant, discordant, tau_b (null when n < 3 or x or y is constant in the group, with
-- the reason in null_reason). Usage: SELECT * FROM kendall_tau_b('my_view');
CREATE OR REPLACE MACRO kendall_tau_b(tbl) AS TABLE
WITH items AS (
    SELECT grp, x::DOUBLE AS x, y::DOUBLE AS y, row_number() OVER () AS id
    FROM query_table(tbl)
    WHERE x IS NOT NULL AND y IS NOT NULL
),
pairs AS (
    SELECT a.grp, sign(a.x - b.x) * sign(a.y - b.y) AS s, a.x = b.x AS tie_x, a.y = b.y AS tie_y
    FROM items a JOIN items b ON a.grp IS NOT DISTINCT FROM b.grp AND a.id < b.id
),
counts AS (
    SELECT grp, count(*) AS n0, count(*) FILTER (s > 0) AS concordant, count(*) FILTER (s < 0) AS discordant,
           count(*) FILTER (tie_x) AS n1, count(*) FILTER (tie_y) AS n2
    FROM pairs GROUP BY grp
),
sizes AS (SELECT grp, count(*) AS n FROM items GROUP BY grp)
SELECT
    s.grp,
    s.n,
    coalesce(c.concordant, 0) AS concordant,
    coalesce(c.discordant, 0) AS discordant,
    CASE WHEN s.n >= 3 AND c.n1 < c.n0 AND c.n2 < c.n0
         THEN (c.concordant - c.discordant) / sqrt((c.n0 - c.n1)::DOUBLE * (c.n0 - c.n2)) END AS tau_b,
    CASE WHEN s.n < 3 THEN 'fewer than 3 items'
         WHEN c.n1 = c.n0 THEN 'x is constant'
         WHEN c.n2 = c.n0 THEN 'y is constant' END AS null_reason
FROM sizes s LEFT JOIN counts c ON s.grp IS NOT DISTINCT FROM c.grp
ORDER BY s.grp;
