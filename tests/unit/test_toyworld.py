import pytest

from sae_models.lm.loading import load_tokenizer
from sae_models.toyworld import ToyModelConfig, ToyWorld, concepts, ioi_prompt_pair, lexicon, save_tokenizer
from sae_models.toyworld.grammar import NAMES, SENTIMENTS, SHARED_WORDS, TOPICS, word_topics


def test_world_has_enough_concepts_and_every_label_is_known():
    names = set(concepts())
    assert len(names) >= 24
    for doc in ToyWorld(3).documents(300):
        assert len(doc.words) == len(doc.labels)
        assert all(label in names for labels in doc.labels for label in labels)


def test_generation_is_a_pure_function_of_the_seed():
    assert [d.text for d in ToyWorld(7).documents(50)] == [d.text for d in ToyWorld(7).documents(50)]
    assert [d.text for d in ToyWorld(7).documents(50)] != [d.text for d in ToyWorld(8).documents(50)]


def test_topic_words_belong_to_one_topic_but_the_shared_ones_to_two():
    topics_of: dict[str, set[str]] = {}
    for topic, vocab in TOPICS.items():
        for words in vocab.values():
            for w in words:
                topics_of.setdefault(w, set()).add(topic)
    for word, topics in topics_of.items():
        assert topics == set(SHARED_WORDS.get(word, topics)) and len(topics) == (2 if word in SHARED_WORDS else 1), word
    assert len(lexicon()) == len(set(lexicon()))
    assert set(SHARED_WORDS) <= set(lexicon()) and not set(SHARED_WORDS) & set(word_topics())


def test_a_shared_word_is_labelled_with_the_topic_that_produced_it():
    """``bank`` in a text about money is money, in a text about the ocean ocean: its label is its context's."""
    labels: dict[str, set[str]] = {}
    for doc in ToyWorld(5).documents(3000):
        for word, labels_of_word in zip(doc.words, doc.labels, strict=True):
            if word in SHARED_WORDS:
                topic = next(c for c in labels_of_word if c.startswith("topic:")).removeprefix("topic:")
                assert topic in SHARED_WORDS[word] and topic in (doc.topic, doc.second_topic)
                labels.setdefault(word, set()).add(topic)
    assert sum(len(t) == 2 for t in labels.values()) >= len(SHARED_WORDS) - 2  # both readings occur


def test_negation_carries_the_sentiment_opposite_to_its_adjective():
    negated = 0
    for doc in ToyWorld(6).documents(2000):
        for i, word in enumerate(doc.words):
            if word == "not":
                adjective, concepts = doc.words[i + 1], doc.labels[i + 1]
                assert f"sentiment:{doc.sentiment}" in concepts and adjective not in SENTIMENTS[doc.sentiment]
                negated += 1
            elif i and doc.words[i - 1] == "was":
                assert doc.words[i] in SENTIMENTS[doc.sentiment]
    assert negated > 100


def test_a_blend_brings_its_second_topic_into_the_modifiers_not_the_nouns():
    blends = [d for d in ToyWorld(7).documents(2000) if d.second_topic]
    assert 0.3 < len(blends) / 2000 < 0.6
    for doc in blends:
        for i, (word, labels_of_word) in enumerate(zip(doc.words, doc.labels, strict=True)):
            if f"topic:{doc.second_topic}" in labels_of_word and word not in TOPICS[doc.topic]["noun"]:
                roles = {c for c in labels_of_word if c.startswith("role:")}
                # an adjective, a verb, the noun of a prepositional phrase (an object after a preposition), or a
                # subject that names one of those again
                assert roles & {"role:adjective", "role:verb", "role:object"} or word in doc.words[:i], doc.text


def test_story_words_carry_their_topic_label():
    doc = ToyWorld(1).story(topic="ocean")
    topical = [labels for w, labels in zip(doc.words, doc.labels, strict=True) if word_topics().get(w) == "ocean"]
    assert topical and all("topic:ocean" in labels for labels in topical)


def test_instruction_prompt_and_ioi_answer_in_both_orders():
    doc = ToyWorld(2).instruction(topic="space")
    assert doc.text.startswith("question : tell me about space . answer :")
    clean, counterfactual, answer = ioi_prompt_pair("alice", "bob")
    assert clean == "when alice and bob went to the market , bob gave a gift to" and answer == "alice"
    assert counterfactual == "when bob and alice went to the market , alice gave a gift to"
    clean, counterfactual, answer = ioi_prompt_pair("alice", "bob", order="BABA")
    assert clean == "when bob and alice went to the market , bob gave a gift to" and answer == "alice"
    assert counterfactual == "when alice and bob went to the market , alice gave a gift to"
    orders = {"ABBA": 0, "BABA": 0}
    world = ToyWorld(4)
    for doc in (world.ioi() for _ in range(50)):
        assert len(doc.words) % 16 == 0
        for start in range(0, len(doc.words), 16):  # each sentence: when X and Y went to the P , S gave a O to IO .
            s = doc.words[start:start + 16]
            assert s[0] == "when" and s[-1] == "." and s[9] in (s[1], s[3]) and s[14] in NAMES
            assert s[14] == ({s[1], s[3]} - {s[9]}).pop()  # the name given once
            orders["ABBA" if s[14] == s[1] else "BABA"] += 1
    assert min(orders.values()) > 0.4 * sum(orders.values())


@pytest.mark.parametrize("family", ["gemma2", "qwen2"])
def test_tokenizer_round_trips_after_a_model_config_is_saved(tmp_path, family):
    """transformers swaps Qwen2's own tokenizer in by model type; ours must survive that."""
    from transformers import AutoModelForCausalLM

    from sae_models.toyworld.train import hf_config

    save_tokenizer(tmp_path)
    tok = load_tokenizer(str(tmp_path))
    AutoModelForCausalLM.from_config(hf_config(ToyModelConfig(family=family, hidden=16, layers=1,
                                                               intermediate=32), tok)).save_pretrained(tmp_path)
    tok = load_tokenizer(str(tmp_path))
    text = "the furry puppy chased a cake ."
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids
    assert tok.decode(ids[1:]) == text


def test_toy_model_config_rejects_bad_shapes():
    with pytest.raises(ValueError, match="family"):
        ToyModelConfig(family="gpt5")
    with pytest.raises(ValueError, match="heads"):
        ToyModelConfig(hidden=30, heads=4)
