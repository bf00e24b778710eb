-- contextual_by_kind: per model, of the CONCEPT100 latents of its SAEs (no baselines), how many are contextual (the
-- current token explains under half of their activation variance, latent_stats) by the kind of their best
-- ground-truth feature on the toy world (latent_purity: a topic, a sentiment, a grammatical role, or a single word).
-- A control twin's rows carry control_of.
SELECT s.model, s.control_of, split_part(p.purity_feature, ':', 1) AS kind, count(*) AS latents,
       avg(l.contextual::DOUBLE) AS contextual_share, avg(l.token_eta2) AS mean_token_eta2
FROM autointerp a
JOIN latent_stats l USING (model, sae, latent)
JOIN latent_purity p USING (model, sae, latent)
JOIN sae_summary s USING (model, sae)
WHERE a.concept100 AND NOT s.is_baseline
GROUP BY ALL
ORDER BY s.model, kind;
