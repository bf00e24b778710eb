-- SAEBench core metrics per SAE, on held-out documents (held_docs of them, held_tokens tokens: a seeded hash of
-- the document id holds out [sweep] holdout_fraction of the documents); achieved L0 beside the target.
SELECT
    model,
    sae,
    architecture,
    target_l0,
    round(l0, 2)                  AS l0,
    round(explained_variance, 3)  AS explained_var,
    round(cossim, 3)              AS cossim,
    round(ce_loss_score, 3)       AS ce_loss_score,
    round(kl_div_score, 3)        AS kl_div_score,
    round(dead_fraction, 3)       AS dead_frac,
    held_out_docs                 AS held_docs,
    tokens                        AS held_tokens
FROM sae_metrics
ORDER BY model, architecture, level NULLS LAST;
