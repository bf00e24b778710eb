"""The toy world's judge-free truth for steering: a direction that writes a concept rises, one that does not stays
flat, the instruction guard refuses an answer that leaves its topic, and nothing of the judge goes in."""

import dagster as dg
import numpy as np
import pytest
import torch

from sae_models.lm import load_lm
from sae_models.lm.extract import forward_to
from sae_models.toyworld import ToyWorld
from sae_models.toyworld.steerability import (
    SteerabilityProbe,
    SteeredLatent,
    concept_words,
    probe_document,
    true_steerability,
)

LAYER = 1
FACTORS = [0.5, 1.0, 2.0, 4.0]


@pytest.fixture(scope="module")
def probe_and_directions(trained_toy_lm):
    """A probe on 24 held-out instruction documents, and unit directions at layer 1: the class-mean difference of
    the tokens of topic:food, and a random one."""
    lm = load_lm(str(trained_toy_lm))
    world = ToyWorld(11)
    docs = [world.instruction() for _ in range(24)]
    probe = SteerabilityProbe(lm, [probe_document(d.words, d.labels, d.topic) for d in docs], LAYER, "resid_post")
    stories = [world.story() for _ in range(200)]
    from sae_models.lm.intervene import tokenize

    enc = tokenize(lm, [d.text for d in stories])
    with torch.inference_mode():
        hidden = forward_to(lm, probe.module, enc["input_ids"], enc["attention_mask"])
    acts, food = [], []
    for r, d in enumerate(stories):
        acts.append(hidden[r, 1:1 + len(d.words)])
        food += ["topic:food" in labels for labels in d.labels]
    acts, food = torch.cat(acts), torch.tensor(food)
    diff = acts[food].mean(0) - acts[~food].mean(0)
    random = torch.randn(len(diff), generator=torch.Generator().manual_seed(0))
    directions = torch.stack([diff / diff.norm(), random / random.norm()])
    return probe, directions, float(diff.norm())


def test_a_direction_that_writes_a_topic_steers_toward_it_and_a_random_one_does_not(probe_and_directions):
    probe, directions, size = probe_and_directions
    rows = true_steerability(probe, directions, [SteeredLatent(0, 2 * size, "topic:food"),
                                                 SteeredLatent(1, 2 * size, "topic:food")], FACTORS)
    food, random = rows
    assert food.factor is not None and food.rise_test > 0.05 and food.keep_test >= 0.5
    assert abs(random.rise_test) < food.rise_test / 3
    assert food.positions > 0 and food.concept == "topic:food"


def test_a_factor_that_drives_the_answer_off_its_instruction_is_never_chosen(probe_and_directions):
    probe, directions, size = probe_and_directions
    (row,) = true_steerability(probe, directions, [SteeredLatent(0, 2 * size, "topic:food")], [40.0])
    # at 80x the class-mean difference the answer is all food words: the instruction's topic is gone
    assert row.factor is None and row.rise_test == 0.0 and row.keep_test is None


def test_a_concept_no_answer_holds_is_missing_not_zero(probe_and_directions):
    probe, directions, size = probe_and_directions
    names, prompt_word = true_steerability(probe, directions, [SteeredLatent(0, size, "role:name"),
                                                               SteeredLatent(0, size, "word:question")], FACTORS)
    assert names.rise_test is None and names.positions == 0 and prompt_word.rise_test is None


@pytest.mark.parametrize("site", ["resid_post", "mlp_out"])
def test_masses_on_the_kept_positions_are_those_of_the_full_logits(probe_and_directions, site):
    """The probe computes logits only where an answer slot is predicted. Each mass equals the one from the full
    forward and a mask grid built the old way, over every position from the slots (not from the probe's kept
    grid), both where the states are cached (resid_post) and where the whole model reruns (mlp_out)."""
    cached, directions, size = probe_and_directions
    probe = cached if site == "resid_post" else SteerabilityProbe(cached.lm, cached.docs, LAYER, site)
    rows = torch.arange(len(probe.docs))
    vectors = size * directions[0].expand(len(rows), -1)
    from sae_models.lm.hooks import edit_output
    from sae_models.lm.intervene import add_vectors
    from sae_models.toyworld.steerability import _masks

    with torch.inference_mode(), edit_output(probe.module, add_vectors(vectors)):
        full = probe.lm.model(**probe.enc).logits.float().softmax(-1)
    masks = _masks("topic:food", probe.vocab, probe.size)
    expected = torch.zeros(*full.shape)
    for r, slots in enumerate(probe.slot_of):
        for t, slot in enumerate(slots):
            if slot in masks:
                expected[r, t] = masks[slot]
    masses = probe.mass(probe.probabilities(vectors, rows), probe.concept_grid("topic:food"))
    assert torch.equal(masses, (full * expected).sum(-1)) and masses.sum() > 0


def test_concept_words_are_the_grammars_in_each_slot():
    food = concept_words("topic:food")
    assert "bread" in food["noun"] and "baked" in food["verb"] and "tasty" in food["adj"]
    assert concept_words("sentiment:positive") == {"adj": {"lovely", "happy", "wonderful", "kind", "great",
                                                           "cheerful"}}
    assert set(concept_words("word:the")) == {"determiner"} and concept_words("word:bread") == {"noun": {"bread"}}
    assert "the" in concept_words("role:determiner")["determiner"]


def test_the_truth_reads_no_judge_output():
    """true_steerability's inputs, all the way up, hold no explanation, judge answer, rating or judge-chosen
    factor: a truth that shared the judge's parts could not test it."""
    from assets.definitions import defs

    graph = defs.get_repository_def().asset_graph
    upstream = {k.to_user_string() for k in graph.upstream_key_iterator(dg.AssetKey("true_steerability"))}
    judged = {"autointerp", "interpretability", "judge_cache", "steering", "steering_concepts", "steering_summary",
              "selection"}
    assert not upstream & judged
    assert {"sae", "latent_purity", "language_model"} <= upstream


def test_the_probe_reads_slots_from_the_grammars_labels():
    doc = ToyWorld(3).instruction("food")
    probe = probe_document(doc.words, doc.labels, doc.topic)
    answer = doc.words.index(":", doc.words.index("answer")) + 1
    assert all(s is None for s in probe.slots[:answer])
    assert {s for s in probe.slots[answer:]} <= {"noun", "verb", "adj", "adj_negated", "determiner", "preposition",
                                                  "punctuation", None}
    nouns = [w for w, s in zip(doc.words, probe.slots, strict=True) if s == "noun"]
    assert nouns and np.mean([w in concept_words("topic:food")["noun"] or w in ("man", "woman", "child", "friend",
                                                                                  "thing", "family")
                              for w in nouns]) > 0.5
