-- validity_truth: per SAE of a trained model (no baselines, no oracles, no control twins), the steering
-- instruments beside the toy world's judge-free true_steerability, for instrument_validity.
SELECT model, sae, true_steerability, g, g - g_unsteered AS g_lift, g_dtc
FROM sae_summary
WHERE NOT is_baseline AND control_of IS NULL AND true_steerability IS NOT NULL
ORDER BY model, sae;
