-- validity_oracles: per oracle dictionary of a model, its known corruption level and seed (from its name,
-- oracle-<level>-s<seed>) and every SAE-level instrument, for instrument_validity.
SELECT
    s.model,
    s.sae,
    CAST(regexp_extract(s.sae, '^oracle-([0-9.]+)-s[0-9]+$', 1) AS DOUBLE) AS corruption,
    CAST(regexp_extract(s.sae, '-s([0-9]+)$', 1) AS INTEGER) AS seed,
    s.mu,
    i.mu_balanced,
    s.mu_simulation,
    s.g,
    s.g - s.g_unsteered AS g_lift,
    s.g_dtc,
    s.concept_f1,
    s.true_interpretability,
    s.true_steerability,
    i.judge_model
FROM sae_summary s
LEFT JOIN interpretability i USING (model, sae)
WHERE s.architecture = 'oracle' AND s.control_of IS NULL
ORDER BY s.model, corruption, s.sae;
