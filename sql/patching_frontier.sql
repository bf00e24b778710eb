-- Feature patching on IOI ([C23]): per model and dictionary, the latent set that greedy dropping keeps
-- at each KL threshold (chosen on the fit pairs) and what it does on the held-out pairs, beside the baselines:
-- nothing patched (kl_unpatched), every differing latent patched (kl_all_patched), the whole counterfactual
-- state (edit_counterfactual), and a random set of as many differing latents (kl_random_set). `reached` is false
-- where even the full set stays above the threshold.
SELECT model, sae, architecture, is_baseline, level, threshold, reached, n_latents,
       round(edit_magnitude, 3) AS edit, round(kl, 4) AS kl, round(kl_p10, 4) AS kl_p10, round(kl_p90, 4) AS kl_p90,
       round(flip_rate, 3) AS flip_rate, round(logit_diff, 2) AS logit_diff, round(kl_random_set, 4) AS kl_random_set,
       n_candidates,
       round(kl_unpatched, 3) AS kl_unpatched, round(kl_all_patched, 4) AS kl_all_patched,
       round(edit_counterfactual, 3) AS edit_counterfactual, round(ioi_accuracy, 3) AS ioi_accuracy,
       round(chance_accuracy, 3) AS chance_accuracy
FROM patching
ORDER BY model, is_baseline, architecture, level, sae, threshold;
