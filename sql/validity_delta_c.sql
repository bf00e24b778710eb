-- validity_delta_c: DeltaC (of the [selection] rank_k, as delta_c) per latent, beside what it should predict:
--   an oracle dictionary's latents (oracle = true), with the dictionary's corruption level, seed and size, from which
--   the corrupted latents are drawn again; and the trained models' steered SAE latents (oracle = false) with their
--   true_steerability and whether their current token explains half or more of their held-out variance.
SELECT f.model, f.sae, f.latent, true AS oracle,
       CAST(regexp_extract(f.sae, '^oracle-([0-9.]+)-s[0-9]+$', 1) AS DOUBLE) AS corruption,
       CAST(regexp_extract(f.sae, '-s([0-9]+)$', 1) AS INTEGER) AS seed, m.d_sae,
       CASE WHEN getvariable('rank_k') = 5 THEN f.delta_c5 ELSE f.delta_c1 END AS delta_c,
       NULL::DOUBLE AS rise_test, NULL::BOOLEAN AS single_word
FROM feature_scores f JOIN sae_metrics m USING (model, sae)
WHERE m.architecture = 'oracle'
UNION ALL
SELECT f.model, f.sae, f.latent, false, NULL, NULL, NULL,
       CASE WHEN getvariable('rank_k') = 5 THEN f.delta_c5 ELSE f.delta_c1 END,
       t.rise_test, NOT l.contextual
FROM feature_scores f
JOIN true_steerability t USING (model, sae, latent)
JOIN latent_stats l USING (model, sae, latent)
JOIN sae_summary s USING (model, sae)
WHERE NOT s.is_baseline AND s.control_of IS NULL AND t.rise_test IS NOT NULL
ORDER BY 1, 2, 3;
