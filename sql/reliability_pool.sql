-- reliability_pool: per SAE of a trained model (no baselines, no control twins), the steered concepts selection
-- chooses among: DeltaC (rank_k 1 and 5), S_out, and the concept's dev and test steering scores.
SELECT c.model, c.sae, c.latent, f.delta_c1, f.delta_c5, f.output_score, c.dev_hm, c.test_hm
FROM steering_concepts c
JOIN feature_scores f USING (model, sae, latent)
JOIN sae_summary s USING (model, sae)
WHERE s.control_of IS NULL AND NOT s.is_baseline
ORDER BY c.model, c.sae, c.latent;
