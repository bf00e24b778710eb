"""True interpretability: the best exact one-feature explanation of a latent on the judge's own detection windows,
from the grammar's labels alone."""

import numpy as np
import pytest

from sae_models.evals.autointerp import AutointerpConfig, TokenText, plan_latent, score_latents
from sae_models.evals.examples import PAD_TOKEN, from_arrow, to_arrow
from sae_models.judges import Judge
from sae_models.judges.toyworld import ToyworldBackend
from sae_models.toyworld import ToyWorld
from sae_models.toyworld.interpretability import best_feature, true_interpretability, window_features
from tests.test_autointerp import Answers, _examples, corpus  # noqa: F401 - the fixture

CFG = AutointerpConfig(n_top=12, n_importance=7, n_random=10, half_window=5)


def _scored(corpus):  # noqa: F811
    return from_arrow(to_arrow(_examples(corpus), keep=np.array([True, True, False])), CFG)


def _labels() -> dict[int, list[list[str]]]:
    return {d: doc.labels for d, doc in enumerate(ToyWorld(3).documents(300))}


def _word_of(corpus):  # noqa: F811
    from transformers import PreTrainedTokenizerFast

    text = TokenText(PreTrainedTokenizerFast(tokenizer_object=corpus[2]))
    return text, lambda token: text([token])[0].strip()


def test_a_topic_latent_is_explained_by_a_concept_and_a_random_one_by_nothing_much(corpus):  # noqa: F811
    _, word_of = _word_of(corpus)
    farming, noise = true_interpretability(_scored(corpus), CFG, _labels(), word_of)
    # 3 of its 4 activating windows carry topic:farming and no negative one does; the fourth fires on "wild",
    # a farming word the grammar labels with animals there (sentiment:positive ties at 0.875 and sorts first)
    assert farming.true_interpretability == pytest.approx(0.875) and farming.true_feature.startswith(("topic:",
                                                                                                    "sentiment:"))
    assert not farming.single_word  # farming is many words: no single one finds as many windows
    # a latent firing at random still finds some word that splits 14 windows well: best-of-many is optimistic
    assert noise.true_interpretability < farming.true_interpretability


class Recording(ToyworldBackend):
    """The toy reader, keeping the windows each detection call shows."""

    def __init__(self):
        super().__init__()
        self.shown: list[list[str]] = []

    def complete(self, request):
        if request.task == "detect":
            self.shown.append(request.payload["windows"])
        return super().complete(request)


def test_it_scores_the_windows_the_judge_saw_and_nothing_the_judge_said(corpus):  # noqa: F811
    text, word_of = _word_of(corpus)
    examples, labels = _scored(corpus), _labels()
    before = true_interpretability(examples, CFG, labels, word_of)
    recording = Recording()
    score_latents(examples, text, Judge(recording), CFG)
    score_latents(examples, text, Judge(Answers("all")), CFG)  # a judge that says the opposite changes nothing
    assert true_interpretability(examples, CFG, labels, word_of) == before
    assert len(recording.shown) == len(examples.latents)
    for i, shown in enumerate(recording.shown):  # the same windows, in the same order, as the judge's
        plan = plan_latent(examples, i, text, CFG)
        ours = []
        for kind, slot in plan.detect_slots:
            tokens = getattr(examples, kind).tokens[i, slot]
            ours.append("".join(text(tokens[tokens != PAD_TOKEN].tolist())))
        assert ours == ["".join(w) if isinstance(w, list | tuple) else str(w) for w in shown]


def test_window_tokens_carry_the_labels_of_their_document_positions():
    labels = {7: [["role:determiner"], ["topic:food", "role:subject"], ["role:verb"]]}
    words = {10: "the", 11: "cake", 12: "ate", 13: "."}
    tokens = np.array([PAD_TOKEN, 10, 11, 12, 13])  # centre pos 2 with half window 2: positions 0..4, 0 = BOS
    features = window_features(tokens, 7, 2, 2, labels, words.__getitem__)
    assert features == {"word:the", "role:determiner", "word:the@role:determiner",
                        "word:cake", "topic:food", "role:subject", "word:cake@topic:food", "word:cake@role:subject",
                        "word:ate", "role:verb", "word:ate@role:verb", "word:."}  # "." lies past the document


def test_ties_go_to_the_simpler_feature_and_single_word_says_whether_a_word_reaches_the_best():
    truth = np.array([True, True, False, False])
    windows = [{"topic:food", "word:cake"}, {"topic:food", "word:cake"}, {"word:the"}, {"word:the"}]
    assert best_feature(windows, truth) == (1.0, "topic:food", True)
    windows = [{"topic:food", "word:cake"}, {"topic:food", "word:pie"}, {"word:the"}, {"word:the"}]
    assert best_feature(windows, truth) == (1.0, "topic:food", False)
    score, feature, _ = best_feature([{"word:a"}, {"word:b"}, {"word:b"}, {"word:a"}], truth)
    assert score == pytest.approx(0.5) and feature == ""  # nothing beats picking no window
