-- sae_summary: one row per current SAE and baseline dictionary (retired variants left out), every per-SAE score
-- side by side: the rank analysis's items. The sae_summary asset stores it as a lake table.
-- control_of: on a control twin's dictionaries, the trained model the twin is the random-weights copy of.
-- sparsity_index numbers each architecture's grid from its densest SAE (1) on, so that SAEs of different
-- architectures and models at the same grid position "agree on the sparsity axis": k / target L0 descending,
-- an L1 coefficient ascending; over the trained models' current variants with metrics, before any other table is
-- joined, so a score still missing elsewhere does not shift it. A twin's SAE takes the index of its trained
-- model's SAE at the same level (a twin may have a part of the sweep only). Null where there is no level
-- (baselines, external SAEs).
-- concept_f1: the toy world's ground truth (mean best F1 over its concepts; null for real models).
-- true_steerability: the toy world's judge-free truth for g, the mean over the steered latents of the rise of their
-- concept's next-token probability (null for real models).
-- true_interpretability: the toy world's judge-free truth for mu, the mean over CONCEPT100 of the best balanced
-- detection accuracy an exact one-feature explanation reaches on the judge's windows (null for real models).
-- contextual_share: of the CONCEPT100 latents, the share that are contextual (latent_stats: the current token's
-- identity explains under half of the latent's activation variance on held-out tokens).
WITH contextual AS (
    SELECT a.model, a.sae, avg(s.contextual::DOUBLE) AS contextual_share
    FROM autointerp a JOIN latent_stats s USING (model, sae, latent)
    WHERE a.concept100
    GROUP BY a.model, a.sae
),
window_truth AS (
    SELECT model, sae, avg(true_interpretability) FILTER (WHERE concept100) AS true_interpretability
    FROM true_interpretability GROUP BY model, sae
),
truth AS (
    SELECT model, sae, avg(rise_test) AS true_steerability FROM true_steerability GROUP BY model, sae
),
f1 AS (
    SELECT model, sae, avg(best_f1) AS concept_f1, avg(best_f1_swept) AS concept_f1_swept
    FROM concept_recovery GROUP BY model, sae
),
-- control_of read by name from the row, so lm_eval partitions written before the twins (without the column) read
-- as trained models rather than failing the query
models AS (
    SELECT model, control_of, coalesce(control_of, model) AS trained
    FROM (SELECT model, to_json(lm_eval) ->> 'control_of' AS control_of FROM lm_eval)
),
current AS (
    SELECT m.model, m.sae, m.architecture, m.level, m.target_l0, coalesce(models.trained, m.model) AS trained,
           models.control_of
    FROM sae_metrics m JOIN sae_variants v USING (model, sae) LEFT JOIN models USING (model)
    WHERE v.in_config
),
grid AS (
    SELECT DISTINCT trained, architecture, level, dense_rank() OVER (
        PARTITION BY trained, architecture
        ORDER BY CASE WHEN target_l0 IS NULL THEN level ELSE -level END) AS sparsity_index
    FROM current
    WHERE control_of IS NULL AND level IS NOT NULL
)
SELECT
    m.model,
    m.sae,
    c.control_of,
    m.architecture,
    i.is_baseline,
    m.level,
    m.target_l0,
    grid.sparsity_index,
    m.l0,
    m.explained_variance,
    m.ce_loss_score,
    i.mu,
    i.mu_always_no,
    i.mu_simulation,
    s.g,
    s.g_unsteered,
    sel.g_out,
    sel.g_dtc,
    sel.g_dtc_chosen_on_test,
    sel.g_random_rank,
    sel.gain,
    sel.gain_out,
    sel.size AS selected,
    f1.concept_f1,
    f1.concept_f1_swept,
    contextual.contextual_share,
    window_truth.true_interpretability,
    truth.true_steerability
FROM sae_metrics m
JOIN current c USING (model, sae)
JOIN interpretability i USING (model, sae)
LEFT JOIN steering_summary s USING (model, sae)
LEFT JOIN selection sel USING (model, sae)
LEFT JOIN f1 USING (model, sae)
LEFT JOIN contextual USING (model, sae)
LEFT JOIN window_truth USING (model, sae)
LEFT JOIN truth USING (model, sae)
LEFT JOIN grid ON grid.trained = c.trained AND grid.architecture = c.architecture AND grid.level = c.level
ORDER BY m.model, i.is_baseline, m.architecture, sparsity_index, m.sae;
