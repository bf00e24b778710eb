-- SAEBench core metrics per SAE, on held-out tokens.
SELECT
    model,
    sae,
    architecture,
    round(l0, 2)                  AS l0,
    round(explained_variance, 3)  AS explained_var,
    round(cossim, 3)              AS cossim,
    round(ce_loss_score, 3)       AS ce_loss_score,
    round(kl_div_score, 3)        AS kl_div_score,
    round(dead_fraction, 3)       AS dead_frac
FROM sae_metrics
ORDER BY model, architecture, level NULLS LAST;
