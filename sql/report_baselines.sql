-- The baseline dictionaries beside the SAEs, per model: each baseline's scores, then the SAEs' mean, with the
-- trivial floors (mu_always_no: answering "no" to every window; g_unsteered: the ratings with no steering). Trained
-- models only: the control twins have their own section, the oracle dictionaries theirs (instrument validity).
SELECT model, sae, mu, mu_always_no, g, g_unsteered, g_dtc, concept_f1
FROM sae_summary WHERE is_baseline AND control_of IS NULL AND architecture <> 'oracle'
UNION ALL
SELECT model, 'mean of ' || count(*) || ' SAEs', avg(mu), avg(mu_always_no), avg(g), avg(g_unsteered), avg(g_dtc),
       avg(concept_f1)
FROM sae_summary WHERE NOT is_baseline AND control_of IS NULL GROUP BY model
ORDER BY model, sae LIKE 'mean of%', sae;
