-- Tokens, documents and activation norms per model.
SELECT
    model,
    count(*)                                              AS tokens,
    count(DISTINCT doc_id)                                AS docs,
    max(len(act))                                         AS d_model,
    round(avg(sqrt(list_inner_product(act, act))), 3)     AS mean_norm,
    round(max(sqrt(list_inner_product(act, act))), 3)     AS max_norm
FROM activations
GROUP BY model
ORDER BY model;
