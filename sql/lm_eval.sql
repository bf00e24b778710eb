-- How well each language model knows its world (toy models; loss in nats per token). A control twin
-- names its trained model in control_of and the seed its random weights were drawn under. IOI on the held-out name
-- pairs, over both orders and per order (ABBA: the indirect object named first; BABA: second).
SELECT
    model,
    control_of,
    init_seed,
    family,
    n_layers,
    d_model,
    round(held_out_loss, 3)          AS held_out_loss,
    round(unigram_cross_entropy, 3)  AS unigram_xent,
    round(topic_word_accuracy, 3)    AS topic_word_acc,
    round(topic_consistency, 3)      AS topic_consistency,
    round(ioi_accuracy, 3)           AS ioi_acc,
    round(ioi_accuracy_abba, 3)      AS ioi_abba,
    round(ioi_accuracy_baba, 3)      AS ioi_baba,
    round(ioi_accuracy_train_pairs, 3) AS ioi_train_pairs,
    round(chance_ioi_accuracy, 3)    AS ioi_chance,
    round(ioi_logit_diff, 2)         AS ioi_logit_diff,
    round(train_seconds, 1)          AS train_s
FROM lm_eval
ORDER BY model;
