-- selection_lift: [W25] Table 2 from our own tables. Per model (and over all models), the mean steering score
-- of the SAEs without selection (g), with the output-score baseline (g_out) and with DTC selection (g_dtc,
-- chosen on dev, scored on test), beside the optimistic choice on test, the unsteered floor and the control
-- g_random_rank (the same dev choice among candidate sets with a random order in place of DeltaC). Lifts are given
-- two ways, because they differ: of the means, (mean g_dtc - mean g) / mean g; and the mean of the per-SAE
-- gains L = (g_dtc - g) / g (undefined for an SAE with g = 0: n_gain counts the SAEs that have one). Every
-- mean is over the same SAEs: those with g, g_out and g_dtc. The baseline and oracle dictionaries get their own rows; a
-- control twin gets its own model rows and is left out of 'all models'.
WITH rows AS (
    SELECT model, CASE WHEN architecture = 'oracle' THEN 'oracles' WHEN is_baseline THEN 'baselines' ELSE 'SAEs' END
           AS dictionaries, *
    EXCLUDE (model) FROM sae_summary
    WHERE g IS NOT NULL AND g_out IS NOT NULL AND g_dtc IS NOT NULL
),
per_model AS (
    SELECT model, dictionaries, g, g_out, g_dtc, g_dtc_chosen_on_test, g_random_rank, g_unsteered, gain, gain_out FROM rows
    UNION ALL
    SELECT 'all models', dictionaries, g, g_out, g_dtc, g_dtc_chosen_on_test, g_random_rank, g_unsteered, gain, gain_out FROM rows
    WHERE control_of IS NULL
)
SELECT
    model,
    dictionaries,
    count(*)                                         AS n,
    avg(g_unsteered)                                 AS g_unsteered,
    avg(g)                                           AS g,
    avg(g_out)                                       AS g_out,
    avg(g_dtc)                                       AS g_dtc,
    avg(g_dtc_chosen_on_test)                        AS g_dtc_chosen_on_test,
    avg(g_random_rank)                               AS g_random_rank,
    100 * (avg(g_out) - avg(g)) / nullif(avg(g), 0)  AS lift_out_of_means,
    100 * (avg(g_dtc) - avg(g)) / nullif(avg(g), 0)  AS lift_dtc_of_means,
    avg(gain_out)                                    AS mean_gain_out,
    avg(gain)                                        AS mean_gain,
    median(gain)                                     AS median_gain,
    count(gain)                                      AS n_gain
FROM per_model
GROUP BY model, dictionaries
ORDER BY model = 'all models', model, dictionaries = 'baselines';
