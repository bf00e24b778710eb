-- Feature selection per SAE: g over every steered concept, g_out (the top latents by output score),
-- g_dtc (the DTC set chosen on the dev half, scored on the test half) and [W25]'s optimistic choice on test.
SELECT
    model,
    sae,
    architecture,
    round(l0, 1)                   AS l0,
    round(g, 3)                    AS g,
    round(g_out, 3)                AS g_out,
    round(g_dtc, 3)                AS g_dtc,
    round(g_dtc_chosen_on_test, 3) AS g_dtc_if_chosen_on_test,
    round(g_random_rank, 3)        AS g_random_rank,
    round(gain, 1)                 AS gain_pct,
    round(gain_out, 1)             AS gain_out_pct,
    chosen_set,
    n_pool
FROM selection
ORDER BY model, is_baseline, architecture, level NULLS LAST, sae;
