import pytest

from sae_models.lm.loading import load_tokenizer
from sae_models.toyworld import ToyModelConfig, ToyWorld, concepts, ioi_prompt_pair, lexicon, save_tokenizer
from sae_models.toyworld.grammar import NAMES, TOPICS, word_topics


def test_world_has_enough_concepts_and_every_label_is_known():
    names = set(concepts())
    assert len(names) >= 24
    for doc in ToyWorld(3).documents(300):
        assert len(doc.words) == len(doc.labels)
        assert all(label in names for labels in doc.labels for label in labels)


def test_generation_is_a_pure_function_of_the_seed():
    assert [d.text for d in ToyWorld(7).documents(50)] == [d.text for d in ToyWorld(7).documents(50)]
    assert [d.text for d in ToyWorld(7).documents(50)] != [d.text for d in ToyWorld(8).documents(50)]


def test_topic_words_belong_to_exactly_one_topic():
    seen: dict[str, str] = {}
    for topic, vocab in TOPICS.items():
        for words in vocab.values():
            for w in words:
                assert seen.setdefault(w, topic) == topic, f"{w} is in {seen[w]} and {topic}"
    assert len(lexicon()) == len(set(lexicon()))


def test_story_words_carry_their_topic_label():
    doc = ToyWorld(1).story(topic="ocean")
    topical = [labels for w, labels in zip(doc.words, doc.labels, strict=True) if word_topics().get(w) == "ocean"]
    assert topical and all("topic:ocean" in labels for labels in topical)


def test_instruction_prompt_and_ioi_answer():
    doc = ToyWorld(2).instruction(topic="space")
    assert doc.text.startswith("question : tell me about space . answer :")
    clean, counterfactual, answer = ioi_prompt_pair("alice", "bob")
    assert clean.endswith("bob gave a gift to") and answer == "alice"
    assert counterfactual.split()[1] == "bob"
    ioi = ToyWorld(4).ioi()
    assert ioi.words[-2] == ioi.words[1] and ioi.words[-2] in NAMES and ioi.words[9] == ioi.words[3]


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
