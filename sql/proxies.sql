-- proxies: per SAE of a trained model (no baselines, oracles or control twins), every cheap per-SAE metric beside
-- the two steering targets, g and the toy world's true_steerability, for the proxies table.
SELECT s.model, s.sae, s.l0, s.explained_variance, s.ce_loss_score, m.kl_div_score, m.dead_fraction, s.mu,
       s.mu_simulation, s.concept_f1, s.true_interpretability, s.g, s.true_steerability
FROM sae_summary s JOIN sae_metrics m USING (model, sae)
WHERE NOT s.is_baseline AND s.control_of IS NULL
ORDER BY s.model, s.sae;
