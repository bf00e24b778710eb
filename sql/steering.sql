-- Steering utility g per SAE (AxBench protocol): the mean over concepts of the test-half HM at the
-- factor chosen on the dev half, beside what the same prompts score unsteered (g_unsteered: doing nothing),
-- lift = g - g_unsteered (what steering adds), and beside g_if_chosen_on_test (the factor picked on the reported half itself: an optimistic upper bound).
-- concept / instruct / fluency: mean ratings (0-2) at the chosen factor on the test half.
SELECT
    model,
    sae,
    architecture,
    target_l0,
    round(l0, 1)               AS l0,
    round(g, 3)                AS g,
    round(g_ci, 3)             AS g_ci95,
    round(g_unsteered, 3)      AS g_unsteered,
    round(g - g_unsteered, 3)  AS lift,
    round(g_chosen_on_test, 3) AS g_if_chosen_on_test,
    round(concept, 2)          AS concept,
    round(instruct, 2)         AS instruct,
    round(fluency, 2)          AS fluency,
    n_concepts,
    n_generations,
    unparseable,
    judge_calls                AS new_calls,
    judge_cached               AS cached
FROM steering_summary
ORDER BY model, is_baseline, architecture, level NULLS LAST, sae;
