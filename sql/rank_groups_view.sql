-- rank_groups: the items of every rank comparison of the rank analysis, one row per (comparison, grouping, group, SAE).
-- Items are SAEs (baselines left out). grp is a struct {comparison, grouping, value}, ready for kendall_tau_b:
--   overall / architecture / sparsity / model: tau-b over all SAEs, or within each value of one axis;
--   psi_<axis>: groups of SAEs that agree on the two other axes, so only <axis> varies within a group
--   (psi_axis = the mean tau-b over those groups, Psi = the mean of the psi).
-- The toy world adds its ground truth: how mu, g and g_dtc each rank the SAEs against concept_f1, and the world's
-- own answer, true_interpretability against true_steerability.
-- The control twins' SAEs are items only after SET VARIABLE include_controls = true (the rank_agreement
-- asset sets it from [control] in_rank_analysis); by default the analysis is over trained models' SAEs.
CREATE OR REPLACE VIEW rank_groups AS
WITH saes AS (
    SELECT * FROM sae_summary
    WHERE NOT is_baseline AND (control_of IS NULL OR coalesce(getvariable('include_controls'), false))
),
items AS (
    SELECT 'mu vs g' AS comparison, model, architecture, sparsity_index, mu AS x, g AS y FROM saes
    UNION ALL SELECT 'mu vs gain', model, architecture, sparsity_index, mu, gain FROM saes
    UNION ALL SELECT 'mu vs g_dtc', model, architecture, sparsity_index, mu, g_dtc FROM saes
    -- g's trivial baseline: how mu ranks the unsteered score, and the part of g that steering adds
    UNION ALL SELECT 'mu vs g_unsteered', model, architecture, sparsity_index, mu, g_unsteered FROM saes
    UNION ALL SELECT 'mu vs g - g_unsteered', model, architecture, sparsity_index, mu, g - g_unsteered FROM saes
    UNION ALL SELECT 'concept_f1 vs mu', model, architecture, sparsity_index, concept_f1, mu FROM saes
    UNION ALL SELECT 'concept_f1 vs g', model, architecture, sparsity_index, concept_f1, g FROM saes
    UNION ALL SELECT 'concept_f1 vs g_dtc', model, architecture, sparsity_index, concept_f1, g_dtc FROM saes
    -- the world's own answer to the question, judge-free on both sides
    UNION ALL SELECT 'true_interpretability vs true_steerability', model, architecture, sparsity_index,
                     true_interpretability, true_steerability FROM saes
),
gridded AS (SELECT * FROM items WHERE sparsity_index IS NOT NULL),
grouped AS (
    SELECT comparison, 'overall' AS grouping, 'all' AS value, x, y FROM items
    UNION ALL SELECT comparison, 'architecture', architecture, x, y FROM items
    UNION ALL SELECT comparison, 'model', model, x, y FROM items
    -- an SAE without a grid position (an external one) is in no sparsity group and no psi group
    UNION ALL SELECT comparison, 'sparsity', sparsity_index::VARCHAR, x, y FROM gridded
    UNION ALL SELECT comparison, 'psi_architecture', model || ' / ' || sparsity_index, x, y FROM gridded
    UNION ALL SELECT comparison, 'psi_sparsity', model || ' / ' || architecture, x, y FROM gridded
    UNION ALL SELECT comparison, 'psi_model', architecture || ' / ' || sparsity_index, x, y FROM gridded
)
SELECT {'comparison': comparison, 'grouping': grouping, 'value': value} AS grp, x, y
FROM grouped
WHERE x IS NOT NULL AND y IS NOT NULL;
