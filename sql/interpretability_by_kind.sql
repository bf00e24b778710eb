-- [C23] Figure 2: per model and dictionary kind (SAE architecture, pooled over sparsities, or baseline),
-- the mean score of the CONCEPT100 latents with its standard error (latents taken as independent: the SAEs
-- they come from are not resampled). Retired variants (see sae_variants) are left out.
SELECT
    a.model,
    i.architecture                                                        AS kind,
    i.is_baseline,
    count(*)                                                              AS n,
    avg(detection_score)                                                  AS detection,
    stddev_samp(detection_score) / sqrt(count(*))                         AS detection_se,
    avg(simulation_score)                                                 AS simulation,
    stddev_samp(simulation_score) / sqrt(count(*))                        AS simulation_se
FROM autointerp AS a
JOIN interpretability AS i USING (model, sae)
JOIN sae_variants AS v USING (model, sae)
WHERE a.concept100 AND v.in_config
GROUP BY ALL
ORDER BY a.model, is_baseline, kind;
