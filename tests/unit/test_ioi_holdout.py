"""IOI is evaluated on name pairs the corpus never contains, so solving it is not recall of training pairs."""

import dataclasses
import json
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from sae_models.lm.loading import load_tokenizer
from sae_models.toyworld import ToyModelReport, ToyWorld, ioi_scores, save_tokenizer
from sae_models.toyworld.grammar import (
    HELD_OUT_IOI_PAIRS,
    IOI_HOLDOUT_MAX_PER_NAME,
    NAMES,
    ioi_counterfactual_pairs,
    ioi_pairs,
    is_held_out_ioi_pair,
)


@pytest.fixture(scope="module")
def corpus_ioi_pairs() -> list[tuple[str, str]]:
    """``(A, B)`` of every IOI document among 5000 generated ones, across two seeds."""
    pairs = []
    for seed in (0, 11):
        for doc in ToyWorld(seed).documents(2500):
            names = [w for w in doc.words if w in NAMES]
            assert not names or doc.kind == "ioi"  # names occur in IOI documents only
            if doc.kind == "ioi":  # (IO, S) of each sentence
                pairs += [(s[14], s[9]) for s in (doc.words[i:i + 16] for i in range(0, len(doc.words), 16))]
    return pairs


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    directory = tmp_path_factory.mktemp("toy_tokenizer")
    save_tokenizer(directory)
    return load_tokenizer(str(directory))


def test_held_out_pairs_are_a_fixed_fifth_of_the_pairs_spread_over_the_names():
    unordered = {frozenset(p) for p in HELD_OUT_IOI_PAIRS}
    assert len(HELD_OUT_IOI_PAIRS) == len(unordered) == 19  # of 190
    uses = Counter(name for pair in HELD_OUT_IOI_PAIRS for name in pair)
    assert set(uses) <= set(NAMES) and max(uses.values()) <= IOI_HOLDOUT_MAX_PER_NAME
    held, train = ioi_pairs(held_out=True), ioi_pairs(held_out=False)
    assert len(held) == 38 and len(train) == 342 and not set(held) & set(train)
    assert set(held) | set(train) == {(a, b) for a in NAMES for b in NAMES if a != b}
    assert all((b, a) in held for a, b in held)  # both orders of a held-out pair are held out
    assert is_held_out_ioi_pair(*HELD_OUT_IOI_PAIRS[0]) and is_held_out_ioi_pair(*HELD_OUT_IOI_PAIRS[0][::-1])


def test_no_generated_document_contains_a_held_out_pair(corpus_ioi_pairs):
    assert len(corpus_ioi_pairs) > 500
    leaked = [p for p in corpus_ioi_pairs if is_held_out_ioi_pair(*p)]
    assert not leaked, f"held-out IOI pairs in the corpus: {sorted(set(leaked))[:5]}"


def test_every_name_and_every_training_pair_occurs_in_training_ioi_documents(corpus_ioi_pairs):
    assert set(corpus_ioi_pairs) == set(ioi_pairs(held_out=False))
    assert {a for a, _ in corpus_ioi_pairs} == {b for _, b in corpus_ioi_pairs} == set(NAMES)


class _RecordingModel:
    """Stands in for a causal LM: records the prompts it is given and predicts, at every position, a name of the
    prompt by a rule: ``io`` the name given once (IOI solved), ``first`` the first name (a positional rule, right
    on ABBA prompts only), ``subject`` the repeated name. (Token 0 is BOS: the names sit at 2, 4 and 10.)"""

    def __init__(self, tokenizer, rule: str):
        self.tokenizer, self.rule, self.prompts = tokenizer, rule, []

    def _answer(self, ids) -> int:
        first, second, subject = int(ids[2]), int(ids[4]), int(ids[10])
        io = second if first == subject else first
        return {"io": io, "first": first, "subject": subject}[self.rule]

    def __call__(self, input_ids, attention_mask):
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            self.prompts.append(self.tokenizer.decode(ids[mask.bool()], skip_special_tokens=True))
        logits = torch.zeros(*input_ids.shape, len(self.tokenizer))
        for row, ids in enumerate(input_ids):
            logits[row, :, self._answer(ids)] = 1.0
        return SimpleNamespace(logits=logits)


def _prompt_pairs(prompts: list[str]) -> set[tuple[str, str]]:
    """(IO, S) of each prompt."""
    pairs = set()
    for prompt in prompts:
        words = prompt.split()
        assert words[0] == "when" and words[-1] == "to" and words[9] in (words[1], words[3])
        pairs.add(({words[1], words[3]} - {words[9]}).pop() + " " + words[9])
    return {tuple(p.split()) for p in pairs}


def test_ioi_accuracy_only_prompts_with_held_out_pairs_in_both_orders(tokenizer):
    model = _RecordingModel(tokenizer, "io")
    assert ioi_scores(model, tokenizer) == (1.0, 1.0)  # accuracy, logit(IO) - logit(S)
    assert len(model.prompts) == len(ioi_counterfactual_pairs()) == 2 * 38 * 16
    assert _prompt_pairs(model.prompts) == set(ioi_pairs(held_out=True))
    assert sum(p.split()[1] == p.split()[9] for p in model.prompts) == len(model.prompts) / 2  # BABA: half

    model = _RecordingModel(tokenizer, "io")
    assert ioi_scores(model, tokenizer, held_out=False)[0] == 1.0
    assert _prompt_pairs(model.prompts) == set(ioi_pairs(held_out=False))


def test_ioi_accuracy_scores_the_indirect_object_not_the_repeated_name_or_a_position(tokenizer):
    assert ioi_scores(_RecordingModel(tokenizer, "subject"), tokenizer) == (0.0, -1.0)
    positional = _RecordingModel(tokenizer, "first")
    assert ioi_scores(positional, tokenizer)[0] == 0.5
    assert ioi_scores(positional, tokenizer, orders=("ABBA",))[0] == 1.0
    assert ioi_scores(positional, tokenizer, orders=("BABA",))[0] == 0.0


def test_report_keeps_training_pair_accuracy_beside_held_out_accuracy():
    from assets.lakehouse.tables import spec

    fields = [f.name for f in dataclasses.fields(ToyModelReport)]
    expected = {"ioi_accuracy", "ioi_accuracy_abba", "ioi_accuracy_baba", "ioi_accuracy_train_pairs"}
    assert expected | {"chance_ioi_accuracy", "ioi_logit_diff"} <= set(fields)
    assert expected <= set(spec("lm_eval").schema.names)


def test_a_trained_model_reports_both_ioi_accuracies(trained_toy_lm):
    report = json.loads((trained_toy_lm / "toyworld_report.json").read_text())
    assert 0 <= report["ioi_accuracy"] <= 1 and 0 <= report["ioi_accuracy_train_pairs"] <= 1
    assert report["chance_ioi_accuracy"] == pytest.approx(1 / len(NAMES))
