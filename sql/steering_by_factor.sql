-- Mean ratings against the steering factor (x m_f; 0 = unsteered), per model and dictionary kind: how concept
-- expression rises and instruction relevance and fluency fall as the factor grows.
SELECT
    s.model,
    v.architecture,
    s.factor,
    round(avg(s.hm), 3)              AS hm,
    round(avg(s.concept_rating), 2)  AS concept,
    round(avg(s.instruct_rating), 2) AS instruct,
    round(avg(s.fluency_rating), 2)  AS fluency,
    count(*)                         AS n
FROM steering s
JOIN steering_summary v USING (model, sae)
GROUP BY ALL
ORDER BY s.model, v.architecture, s.factor;
