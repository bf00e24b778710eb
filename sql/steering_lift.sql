-- What steering adds, per model: over its SAEs (no baselines; a control twin's apart, by control_of), the mean of
-- g - g_unsteered with its spread, and how many SAEs steer above their own unsteered score. The report adds the
-- Student-t interval over SAEs.
SELECT model, control_of, count(*) AS saes, avg(g) AS g, avg(g_unsteered) AS g_unsteered,
       avg(g - g_unsteered) AS lift, stddev_samp(g - g_unsteered) AS lift_sd,
       count(*) FILTER (WHERE g > g_unsteered) AS saes_above
FROM sae_summary
WHERE NOT is_baseline AND g IS NOT NULL AND g_unsteered IS NOT NULL
GROUP BY model, control_of
ORDER BY coalesce(control_of, model), control_of NULLS FIRST;
