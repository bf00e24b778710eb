"""True interpretability: an exact one-feature explanation chosen on the judge's explanation windows, scored on its
detection windows, from the grammar's labels alone."""

import dagster as dg
import numpy as np
import pytest
import torch

from sae_models.evals.autointerp import AutointerpConfig, balanced_accuracy, plan_latent
from sae_models.evals.examples import PAD_TOKEN, from_arrow, gather_examples, to_arrow
from sae_models.toyworld import ToyWorld, build_tokenizer
from sae_models.toyworld.interpretability import (
    best_in_sample,
    detection_accuracy,
    explain_feature,
    token_features,
    true_interpretability,
)

CFG = AutointerpConfig(n_top=12, n_importance=7, n_random=10, half_window=5)


@pytest.fixture(scope="module")
def world():
    """300 toy documents and three latents defined by the grammar itself: 0 fires on every word labelled
    topic:food, 1 on the word "the", 2 on 30% of all tokens at random."""
    tok = build_tokenizer()
    docs = ToyWorld(5).documents(300)
    rng = np.random.default_rng(0)
    ids, doc_ids, pos, acts = [], [], [], []
    for d, doc in enumerate(docs):
        for i, (word, labels) in enumerate(zip(doc.words, doc.labels, strict=True)):
            ids.append(tok.token_to_id(word))
            doc_ids.append(d)
            pos.append(i + 1)
            acts.append([2.0 * ("topic:food" in labels), 1.5 * (word == "the"), float(rng.random() < 0.3)])
    keys = {"doc_id": np.array(doc_ids), "pos": np.array(pos), "token_id": np.array(ids)}
    examples = gather_examples(torch.relu, [(keys, torch.tensor(acts))], np.array([0, 1, 2]), CFG)
    word_of = {tok.token_to_id(w): w for w in {w for doc in docs for w in doc.words}}.__getitem__
    return from_arrow(to_arrow(examples), CFG), docs, word_of


def _picked_by_hand(examples, docs, i: int, carries) -> tuple[np.ndarray, object]:
    """Which detection windows of latent i hold a word for which ``carries(word, labels)``, read straight from the
    documents (not through token_features)."""
    plan = plan_latent(examples, i, lambda ids: [""] * len(ids), CFG)
    picked = []
    for kind, slot in plan.detect_slots:
        ws = getattr(examples, kind)
        doc, centre = docs[int(ws.doc[i, slot])], int(ws.pos[i, slot])
        positions = [centre - CFG.half_window + k for k in range(CFG.width) if ws.tokens[i, slot, k] != PAD_TOKEN]
        picked.append(any(carries(doc.words[p - 1], doc.labels[p - 1]) for p in positions if 0 < p <= len(doc.words)))
    return np.array(picked), plan


def test_latents_defined_by_a_concept_or_a_word_are_explained_by_it_and_scored_on_the_judges_truth(world):
    examples, docs, word_of = world
    food, the, noise = true_interpretability(examples, CFG, {d: doc.labels for d, doc in enumerate(docs)}, word_of)
    assert (food.true_feature, the.true_feature) == ("topic:food", "word:the")
    for row, carries in ((food, lambda w, labels: "topic:food" in labels), (the, lambda w, labels: w == "the")):
        picked, plan = _picked_by_hand(examples, docs, int(row.latent), carries)
        assert row.true_interpretability == pytest.approx(balanced_accuracy(picked, plan.detect_truth))
        assert row.true_interpretability <= row.best_in_sample
    # "the" is in almost every window: SAEBench's truth counts the random windows negative, their own activation
    # would not, and the two give different scores (so scoring against the wrong truth would fail here)
    picked, plan = _picked_by_hand(examples, docs, 1, lambda w, labels: w == "the")
    assert (plan.detect_truth != plan.detect_active).any()
    assert balanced_accuracy(picked, plan.detect_active) != pytest.approx(the.true_interpretability)
    assert noise.true_interpretability < min(food.true_interpretability, the.true_interpretability)
    assert noise.best_in_sample - noise.true_interpretability > 0.1  # choosing on the scored windows flatters


def test_the_truth_reads_no_judge_output():
    """true_interpretability's inputs, all the way up, hold no explanation or judge answer."""
    from assets.definitions import defs

    graph = defs.get_repository_def().asset_graph
    upstream = {k.to_user_string() for k in graph.upstream_key_iterator(dg.AssetKey("true_interpretability"))}
    assert not upstream & {"autointerp", "interpretability", "judge_cache", "steering", "steering_concepts"}
    assert {"latent_examples", "corpus"} <= upstream


def test_window_tokens_carry_the_labels_of_their_document_positions():
    labels = {7: [["role:determiner"], ["topic:food", "role:subject"], ["role:verb"]]}
    words = {10: "the", 11: "cake", 12: "ate", 13: "."}
    tokens = np.array([PAD_TOKEN, 10, 11, 12, 13])  # centre pos 2 with half window 2: positions 0..4, 0 = BOS
    features = token_features(tokens, 7, 2, 2, labels, words.__getitem__)
    assert features == [None, {"word:the", "role:determiner", "word:the@role:determiner"},
                        {"word:cake", "topic:food", "role:subject", "word:cake@topic:food", "word:cake@role:subject"},
                        {"word:ate", "role:verb", "word:ate@role:verb"}, {"word:."}]  # "." lies past the labels


def test_the_explainer_prefers_the_simpler_feature_and_a_one_class_truth_scores_nothing():
    tokens = [{"topic:food", "word:cake"}, {"topic:food", "word:cake"}, {"word:the"}]
    assert explain_feature(tokens, np.array([True, True, False])) == "topic:food"  # ties with word:cake
    assert explain_feature(tokens, np.zeros(3, bool)) == ""
    windows = [{"topic:food"}, {"word:the"}]
    assert detection_accuracy("topic:food", windows, np.array([True, False])) == 1.0
    assert detection_accuracy("topic:food", windows, np.array([True, True])) is None
    assert best_in_sample(windows, np.array([False, False])) is None
    assert best_in_sample([{"word:a"}, {"word:a"}], np.array([True, False])) == 0.5  # nothing beats picking none


def test_the_truth_tables_checks_catch_a_score_out_of_range():
    from assets.defs.interpretability.checks import true_interpretability_in_range
    from assets.defs.steering.checks import true_steerability_in_range
    from assets.lakehouse.config import Settings

    settings = Settings()
    rows = [{"latent": i, "true_interpretability": 0.6, "best_in_sample": 0.8, "concept100": i < 100}
            for i in range(128)]
    assert true_interpretability_in_range(rows, settings).passed
    rows[5]["true_interpretability"] = 0.9  # above the best any feature reaches on the same windows
    assert not true_interpretability_in_range(rows, settings).passed
    steered = [{"latent": 1, "rise_test": 0.1, "factor": 0.5}, {"latent": 2, "rise_test": None, "factor": None}]
    assert true_steerability_in_range(steered, settings).passed
    assert not true_steerability_in_range(steered + [{"latent": 3, "rise_test": 1.5, "factor": 0.5}], settings).passed
