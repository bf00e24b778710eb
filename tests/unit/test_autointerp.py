"""Autointerp scores on a toy corpus with latents of known meaning, scored by the toy-world reader."""

import numpy as np
import pytest
import torch

from sae_models.evals.autointerp import (
    AutointerpConfig,
    TokenText,
    concept_subset,
    plan_latent,
    score_latents,
    too_few_activations,
)
from sae_models.evals.examples import ExampleConfig, from_arrow, gather_examples, to_arrow
from sae_models.judges import Judge
from sae_models.judges.toyworld import ToyworldBackend
from sae_models.sae.sweep import SAEIdentity
from sae_models.toyworld import ToyWorld, build_tokenizer
from sae_models.toyworld.grammar import TOPICS
from sae_models.toyworld.truth import latent_purity

CFG = ExampleConfig(n_top=12, n_importance=7, n_random=10, half_window=5)
FARMING = {w for pos in TOPICS["farming"].values() for w in pos}


@pytest.fixture(scope="module")
def corpus():
    """Rows of 300 toy documents; three latents: 0 fires on farming words (strength varies), 1 fires on 30%
    of all tokens at random, 2 fires only in two documents."""
    tok = build_tokenizer()
    rng = np.random.default_rng(0)
    ids, docs, pos, acts = [], [], [], []
    for d, doc in enumerate(ToyWorld(3).documents(300)):
        words = doc.text.split()
        for i, word in enumerate(words):
            ids.append(tok.token_to_id(word))
            docs.append(d)
            pos.append(i + 1)
            acts.append([float(word in FARMING) * rng.uniform(1, 3), float(rng.random() < 0.3) * rng.uniform(1, 3),
                         float(d in (5, 9) and i == 2)])
    keys = {"doc_id": np.array(docs), "pos": np.array(pos), "token_id": np.array(ids)}
    return keys, torch.tensor(acts), tok


def _examples(corpus):
    keys, acts, _ = corpus
    return gather_examples(torch.relu, [(keys, acts)], np.array([0, 1, 2]), CFG)


def test_a_word_group_latent_scores_high_and_a_random_one_low(corpus):
    from transformers import PreTrainedTokenizerFast

    examples = _examples(corpus)
    few = too_few_activations(examples, AutointerpConfig())
    assert few.tolist() == [False, False, True]
    keep = to_arrow(examples, keep=~few)
    scored = from_arrow(keep, CFG)
    assert scored.latents.tolist() == [0, 1]
    text = TokenText(PreTrainedTokenizerFast(tokenizer_object=corpus[2]))
    judge = Judge(ToyworldBackend())
    farming, noise = score_latents(scored, text, judge)
    assert farming.explanation.startswith("concept farming")
    # 12 of 14: a random window that holds a farming word counts as non-activating (SAEBench's convention), and
    # farming words turn up in other topics' texts (blends, shared words)
    assert farming.detection_score >= 0.85 and farming.simulation_score > 0.8
    assert noise.detection_score < 10 / 14 and noise.simulation_score < 0.4  # below answering "no" to every window
    assert judge.stats.calls == 8 and judge.stats.unparseable == 0  # 2 explanations, detect, simulate per latent


def _windows_of(ws, i: int) -> list[tuple]:
    """Latent ``i``'s filled windows as whole rows (doc, pos, score, tokens, acts), in a canonical order."""
    return sorted((int(d), int(p), float(s), tuple(t), tuple(a)) for d, p, s, t, a in
                  zip(ws.doc[i], ws.pos[i], ws.score[i], ws.tokens[i].tolist(), ws.acts[i].tolist(), strict=True)
                  if d >= 0)


def test_examples_round_trip_through_arrow(corpus):
    """Each latent gets back exactly its own windows, whole (a swap between latents or columns would show)."""
    examples = _examples(corpus)
    back = from_arrow(to_arrow(examples), CFG)
    assert back.latents.tolist() == examples.latents.tolist()
    for kind in ("top", "importance", "random"):
        a, b = getattr(examples, kind), getattr(back, kind)
        assert _windows_of(a, 0) and _windows_of(a, 1)
        for i in range(len(examples.latents)):
            assert _windows_of(a, i) == _windows_of(b, i), (kind, i)


def test_concept_subset_is_fixed_by_seed():
    latents = np.arange(1000)
    first = concept_subset(latents, 100, seed=0)
    assert np.array_equal(first, concept_subset(latents, 100, seed=0)) and len(set(first)) == 100
    assert not np.array_equal(first, concept_subset(latents, 100, seed=1))
    assert np.array_equal(concept_subset(np.arange(7), 100, seed=0), np.arange(7))


def test_purity_rewards_a_rare_pure_latent_over_a_common_or_mixed_one():
    features = torch.zeros(100, 2, dtype=torch.bool)
    features[:10, 0] = True  # a rare concept
    features[:90, 1] = True  # a concept on nearly every token
    codes = torch.zeros(100, 3)
    codes[:10, 0] = 1.0  # exactly the rare concept
    codes[:90, 1] = 1.0  # exactly the common one
    codes[::2, 2] = 1.0  # every other token
    purity, best = latent_purity(codes, features)
    assert purity[0] == pytest.approx(0.9) and best[0] == 0
    assert purity[1] == pytest.approx(0.1) and purity[2] < 0.1


def test_random_windows_count_as_non_activating_whatever_they_hold(corpus):
    """SAEBench's convention (``random_negative``): the 4 held-out top / importance windows are the only positives,
    even though latent 1 (fires on 30% of tokens) is active in most of its random windows."""
    from transformers import PreTrainedTokenizerFast

    examples = from_arrow(to_arrow(_examples(corpus)), CFG)
    text = TokenText(PreTrainedTokenizerFast(tokenizer_object=corpus[2]))
    cfg = AutointerpConfig(n_top=12, n_importance=7, n_random=10, half_window=5)
    plan = plan_latent(examples, 1, text, cfg)
    assert len(plan.detect) == 14 and plan.detect_truth.sum() == 4
    literal = plan_latent(examples, 1, text, cfg.model_copy(update={"random_negative": False}))
    assert literal.detect_truth.sum() > 4  # so the convention above is what keeps the random ones negative


def _plan(corpus, latent: int, seed: int):
    from transformers import PreTrainedTokenizerFast

    examples = from_arrow(to_arrow(_examples(corpus)), CFG)
    text = TokenText(PreTrainedTokenizerFast(tokenizer_object=corpus[2]))
    cfg = AutointerpConfig(n_top=12, n_importance=7, n_random=10, half_window=5, seed=seed)
    return examples, plan_latent(examples, latent, text, cfg)


def test_simulation_windows_are_drawn_at_random_and_shown_shuffled(corpus):
    """The [C23] random windows are not the most active random ones, and the top windows do not come first."""
    examples, _ = _plan(corpus, 1, 0)
    random_scores = sorted(examples.random.score[1][examples.random.doc[1] >= 0], reverse=True)
    top_five_mean = float(np.mean(random_scores[:5]))
    drawn_means, first_is_random = [], []
    for seed in range(12):
        _, plan = _plan(corpus, 1, seed)
        maxima = [float(np.max(t)) for t in plan.sim_truth]
        top_max = examples.top.score[1][examples.top.doc[1] >= 0].min()
        is_top = [m >= top_max for m in maxima]
        assert sum(is_top) >= 5  # the 5 held-out top windows are all there
        drawn_means.append(np.mean(sorted(maxima)[:5]))
        first_is_random.append(not is_top[0])
    assert min(drawn_means) < top_five_mean  # some draw leaves a more active random window out
    assert 0 < sum(first_is_random) < 12  # position says nothing about which kind a window is


class Answers:
    """A judge backend that explains with a fixed phrase and detects with a fixed answer."""

    name, model, max_concurrency = "fixed", "fixed/v1", 1

    def __init__(self, detect: str):
        self.detect = detect

    def complete(self, request):
        from sae_models.judges import Completion

        if request.task == "detect":
            n = len(request.payload["windows"])
            return Completion(", ".join(str(i) for i in range(1, n + 1)) if self.detect == "all" else "None")
        if request.task == "simulate":
            return Completion("\n".join(f"{i}: " + " ".join("0" for _ in w)
                                        for i, w in enumerate(request.payload["windows"], 1)))
        return Completion("Explanation: something")


@pytest.mark.parametrize("answer", ["none", "all"])
def test_trivial_answers_score_their_baseline_and_a_balanced_accuracy_of_one_half(corpus, answer):
    from transformers import PreTrainedTokenizerFast

    from sae_models.evals.autointerp import mark_concept_and_purity, summarize

    examples = from_arrow(to_arrow(_examples(corpus), keep=np.array([True, True, False])), CFG)
    text = TokenText(PreTrainedTokenizerFast(tokenizer_object=corpus[2]))
    cfg = AutointerpConfig(n_top=12, n_importance=7, n_random=10, half_window=5)
    judge = Judge(Answers(answer))
    rows = mark_concept_and_purity(score_latents(examples, text, judge, cfg), cfg, {})
    share_negative = [1 - r.detect_positive / r.detect_windows for r in rows]
    scores = share_negative if answer == "none" else [1 - x for x in share_negative]
    assert rows[1].detect_windows == 14 and rows[1].detect_positive == 4  # 10/14 = 0.714 for "none"
    assert [r.detection_score for r in rows] == pytest.approx(scores)
    assert [r.detection_balanced for r in rows] == pytest.approx([0.5, 0.5])
    summary = summarize(rows, 2, judge, SAEIdentity("x", is_baseline=False, level=None, target_l0=None, l0=1.0))
    assert summary.mu == pytest.approx(np.mean(scores))
    assert summary.mu_always_no == pytest.approx(np.mean(share_negative))
    assert summary.mu_always_yes == pytest.approx(1 - np.mean(share_negative))
    assert summary.mu_balanced == pytest.approx(0.5)
    # by activation, latent 1 (fires on 30% of tokens) has active random windows: "none" no longer scores 10/14
    assert summary.mu_by_activation_always_no < 10 / 14
    expected = summary.mu_by_activation_always_no if answer == "none" else 1 - summary.mu_by_activation_always_no
    assert summary.mu_by_activation == pytest.approx(expected)


def test_run_autointerp_scores_marks_purity_and_summarizes_with_the_judges_usage(corpus):
    """The run is score, mark, summarize: every latent of the examples scored, the too-few ones counted from
    ``n_sampled``, each latent's purity attached, and the judge's counts in the summary."""
    from transformers import PreTrainedTokenizerFast

    from sae_models.evals.autointerp import run_autointerp

    examples = from_arrow(to_arrow(_examples(corpus), keep=np.array([True, True, False])), CFG)
    text = TokenText(PreTrainedTokenizerFast(tokenizer_object=corpus[2]))
    cfg = AutointerpConfig(n_top=12, n_importance=7, n_random=10, half_window=5, n_concept=1)
    judge = Judge(ToyworldBackend())
    sae = SAEIdentity("x", is_baseline=False, level=None, target_l0=None, l0=1.0)
    result = run_autointerp(examples, text, judge, cfg, {0: (0.9, "topic:farming"), 1: (0.2, "word:the")}, 3, sae)
    assert [r.latent for r in result.rows] == [0, 1]
    assert [(r.concept_purity, r.purity_feature) for r in result.rows] == [(0.9, "topic:farming"), (0.2, "word:the")]
    (concept,) = [r for r in result.rows if r.concept100]
    s = result.summary
    assert (s.n_scored, s.n_concept, s.n_too_few) == (2, 1, 1) and s.identity == sae
    assert s.mu == pytest.approx(concept.detection_score)
    assert s.mu_all == pytest.approx(np.mean([r.detection_score for r in result.rows]))
    assert s.usage.calls == judge.stats.calls == 8 and s.usage is not judge.stats  # a copy, not the live counts
    assert (s.judge, s.judge_model) == (judge.name, judge.backend.model)
    assert s.mu_simulation == pytest.approx(concept.simulation_score)
    assert s.purity_spearman is None  # two latents: no rank correlation
    literal = run_autointerp(examples, text, Judge(ToyworldBackend()), cfg.model_copy(
        update={"random_negative": False}), {}, 2, sae)  # the run scores by its own config
    assert [r.detect_positive for r in literal.rows] != [r.detect_positive for r in result.rows]


def test_the_scored_latents_are_a_fixed_sorted_sample_of_the_live_ones():
    from sae_models.evals.autointerp import scored_latents

    live = np.arange(10, 40, 3)
    picked = scored_latents(live, 4, seed=0)
    assert len(set(picked.tolist())) == 4 and set(picked.tolist()) <= set(live.tolist())
    assert picked.tolist() == sorted(picked.tolist())
    assert np.array_equal(picked, scored_latents(live, 4, seed=0))
    assert any(not np.array_equal(picked, scored_latents(live, 4, seed=s)) for s in range(1, 4))
    assert np.array_equal(scored_latents(live, 50, seed=0), live)  # fewer live latents than asked: all of them


def test_purity_strata_and_their_correlations_per_model():
    from scipy.stats import spearmanr

    from sae_models.evals.autointerp import purity_correlation_by_model, purity_stratum

    assert [purity_stratum(f) for f in ("topic:farming", "sentiment:positive", "role:determiner", "word:cow",
                                         "role:subject")] == ["lookup", "lookup", "lookup", "word", "position"]
    rng = np.random.default_rng(0)
    n = 30
    models = ["a"] * n + ["b"] * n
    detection, purity = rng.random(2 * n), rng.random(2 * n)
    features = (["topic:x"] * 11 + ["word:y"] * 9 + ["role:subject"] * 10) * 2
    out = purity_correlation_by_model(models, detection, purity, features)
    assert set(out) == {f"{m}{s}" for m in "ab" for s in ("", "/lookup", "/word", "/position")}
    assert out["b"] == pytest.approx(spearmanr(detection[n:], purity[n:]).statistic)
    assert out["a/lookup"] == pytest.approx(spearmanr(detection[:11], purity[:11]).statistic)
    assert out["b/position"] == pytest.approx(spearmanr(detection[50:], purity[50:]).statistic)  # 10: enough
    assert out["a/word"] is None  # under 10 latents in the stratum


def test_intervals_are_the_student_t_half_widths_of_each_score():
    from scipy.stats import t

    from sae_models.evals.autointerp import add_intervals

    rows = add_intervals([{"n": 5, "detection_se": 0.1, "simulation_se": 0.2}, {"n": 1, "detection_se": None,
                                                                                   "simulation_se": None}])
    assert rows[0]["detection_ci"] == pytest.approx(t.ppf(0.975, 4) * 0.1)
    assert rows[0]["simulation_ci"] == pytest.approx(t.ppf(0.975, 4) * 0.2)
    assert rows[1]["detection_ci"] == 0.0  # one latent: no interval


def test_balanced_accuracy_averages_the_hit_rate_of_each_class_present():
    from sae_models.evals.autointerp import balanced_accuracy

    truth = np.array([True, True, False, False, False])
    assert balanced_accuracy(np.array([True, False, False, False, True]), truth) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert balanced_accuracy(np.array([True, False]), np.array([True, True])) == pytest.approx(0.5)  # one class


def test_the_simulation_score_is_the_pearson_correlation_and_0_for_a_constant_side():
    from sae_models.evals.autointerp import _pearson

    assert _pearson([[0.0, 2.0], [4.0]], [np.array([0, 1]), np.array([2])]) == pytest.approx(1.0)  # std 1 exactly
    assert _pearson([[0.0, 1.0]], [np.array([2, 0])]) == pytest.approx(-1.0)  # the truth's std is 1
    assert _pearson([[3.0, 3.0, 3.0]], [np.array([0, 1, 5])]) == 0.0  # a constant prediction
    assert _pearson([[0.0, 1.0, 5.0]], [np.array([2, 2, 2])]) == 0.0  # nothing to predict


def test_an_unparseable_detection_answer_scores_0_and_keeps_the_window_counts():
    from sae_models.evals.autointerp import _detection

    plan = type("Plan", (), {"detect": [None] * 4, "detect_truth": np.array([True, False, False, True]),
                             "detect_active": np.array([True, True, False, True])})()
    assert _detection(None, plan) == {"detection_score": 0.0, "detection_balanced": 0.0,
                                      "detection_by_activation": 0.0, "detect_windows": 4, "detect_positive": 2,
                                      "detect_active": 3}
    picked = _detection([True, True, False, False], plan)
    assert (picked["detection_score"], picked["detection_balanced"], picked["detection_by_activation"]) == (
        0.5, 0.5, 0.75)


@pytest.mark.parametrize(("tops", "need"), [((3, 2, 2, 1), 5), ((1, 1, 3, 2), 5)])
def test_too_few_activations_needs_the_explanation_and_held_out_windows_of_both_scores(tops, need):
    from types import SimpleNamespace

    explain_top, score_top, sim_explain_top, sim_top = tops
    cfg = AutointerpConfig().model_copy(update={"explain_top": explain_top, "score_top": score_top,
                                                "sim_explain_top": sim_explain_top, "sim_top": sim_top})
    doc = np.full((2, 8), -1)
    doc[0, :need] = np.arange(need)  # document 0 is a document
    doc[1, :need - 1] = np.arange(need - 1)
    assert too_few_activations(SimpleNamespace(top=SimpleNamespace(doc=doc)), cfg).tolist() == [False, True]


def test_concept100_is_the_seeded_subset_and_purity_comes_by_latent():
    from dataclasses import replace

    from sae_models.evals.autointerp import LatentScore, mark_concept_and_purity

    base = LatentScore(0, "e", 0.5, 0.5, 0.5, 4, 2, 2, "s", 0.1, 0)
    rows = [replace(base, latent=f) for f in range(3, 33)]
    cfg = AutointerpConfig(n_concept=10, seed=7)
    marked = mark_concept_and_purity(rows, cfg, {5: (0.4, "word:cow")})
    assert {r.latent for r in marked if r.concept100} == set(concept_subset(np.arange(3, 33), 10, 7).tolist())
    assert [(r.concept_purity, r.purity_feature) for r in marked if r.latent in (4, 5)] == [
        (None, None), (0.4, "word:cow")]


def test_the_summary_correlates_detection_with_purity_only_when_every_latent_has_one():
    from dataclasses import replace

    from scipy.stats import spearmanr

    from sae_models.evals.autointerp import LatentScore, summarize

    base = LatentScore(0, "e", 0.5, 0.5, 0.5, 4, 1, 2, "s", 0.1, 0, concept100=True)
    det, purity = [0.9, 0.4, 0.6, 0.7], [0.8, 0.1, 0.5, 0.2]
    rows = [replace(base, latent=i, detection_score=d, concept_purity=p)
            for i, (d, p) in enumerate(zip(det, purity, strict=True))]
    sae = SAEIdentity("x", is_baseline=False, level=None, target_l0=None, l0=1.0)
    judge = Judge(ToyworldBackend())
    s = summarize(rows, 5, judge, sae)
    assert s.purity_spearman == pytest.approx(spearmanr(det, purity).statistic)
    assert s.mu_always_no == pytest.approx(0.75) and s.mu_by_activation_always_no == pytest.approx(0.5)
    assert (s.n_scored, s.n_concept, s.n_too_few) == (4, 4, 1)
    assert summarize(rows[:3] + [replace(rows[3], concept_purity=None)], 4, judge, sae).purity_spearman is None
    assert summarize([], 0, judge, sae).purity_spearman is None
    one_window = [replace(r, detect_windows=1, detect_positive=1, detect_active=1) for r in rows]
    single = summarize(one_window, 4, judge, sae)
    assert single.mu_always_no == 0.0 and single.mu_by_activation_always_no == 0.0  # 1 - 1/1: over the windows


class Garbled(Answers):
    """Answers like ``Answers("none")`` but garbles one step: the detection answer, or the explanation that the
    simulation is written from (the one from fewer windows)."""

    def __init__(self, step: str):
        super().__init__("none")
        self.step = step

    def complete(self, request):
        from sae_models.judges import Completion

        if self.step == "detect" and request.task == "detect":
            return Completion("I cannot tell")
        if self.step == "sim_explain" and request.task == "explain" and len(request.payload["windows"]) == 5:
            return Completion("")
        if self.step == "explain" and request.task == "explain":
            return Completion("")
        return super().complete(request)


@pytest.mark.parametrize("step", ["detect", "sim_explain", "explain"])
def test_an_unparseable_answer_is_counted_once_per_chain_and_scores_0_there(corpus, step):
    from transformers import PreTrainedTokenizerFast

    examples = from_arrow(to_arrow(_examples(corpus), keep=np.array([True, True, False])), CFG)
    text = TokenText(PreTrainedTokenizerFast(tokenizer_object=corpus[2]))
    cfg = AutointerpConfig(n_top=12, n_importance=7, n_random=10, half_window=5)
    rows = score_latents(examples, text, Judge(Garbled(step)), cfg)
    if step == "explain":  # both chains fail at their explanation: nothing to score
        assert [r.unparseable for r in rows] == [2, 2]
        assert all(r.explanation == r.simulation_explanation == "" and r.detection_score == 0.0 for r in rows)
        return
    assert [r.unparseable for r in rows] == [1, 1]
    assert all(r.explanation == "something" for r in rows)
    if step == "detect":
        assert all(r.detection_score == 0.0 and r.simulation_explanation == "something" for r in rows)
    else:
        assert all(r.simulation_score == 0.0 and r.simulation_explanation == "" for r in rows)
        assert all(r.detection_score == pytest.approx(10 / 14) for r in rows)  # "none" of 4 in 14 windows


def test_the_plan_splits_the_windows_as_saebench_and_c23_do(corpus):
    """Explanation and held-out top windows never overlap; the explanation's importance windows come most active
    first; tau is the threshold times the top activation; the scoring windows carry no activations (the judge
    must not see them) and are labelled by kind and slot; [C23] explains from even top ranks and simulates odd ones;
    the draw is seeded per latent."""
    examples, plan = _plan(corpus, 0, 0)
    cfg = AutointerpConfig(n_top=12, n_importance=7, n_random=10, half_window=5)
    top = examples.top.filled(0)
    assert plan.tau == pytest.approx(cfg.threshold * float(examples.top.score[0].max()))
    explain_top = [s for kind, s in plan.explain_slots if kind == "top"]
    held = [s for kind, s in plan.detect_slots if kind == "top"]
    assert len(held) == len(set(held)) == cfg.score_top and not set(held) & set(explain_top)
    assert len(explain_top) == min(cfg.explain_top, len(top) - cfg.score_top)
    importance = [s for kind, s in plan.explain_slots if kind == "importance"]
    scores = [float(examples.importance.score[0, s]) for s in importance]
    assert len(importance) == cfg.explain_importance and scores == sorted(scores, reverse=True)
    assert {kind for kind, _ in plan.detect_slots} == {"top", "importance", "random"}
    assert all(w.acts == () for w in plan.detect + plan.sim) and all(w.acts for w in plan.explain + plan.sim_explain)
    active = [float(getattr(examples, kind).score[0, s]) > plan.tau for kind, s in plan.detect_slots]
    assert plan.detect_active.tolist() == active
    sim_top = {float(t.max()) for t in plan.sim_truth} & {float(examples.top.score[0, s]) for s in top}
    assert sim_top == {float(examples.top.score[0, s]) for s in top[1::2][:cfg.sim_top]}
    even = _windows_acts(examples, top[0::2][:cfg.sim_explain_top])
    assert [w.acts for w in plan.sim_explain] == [w.acts for w in even]
    again = _plan(corpus, 0, 0)[1]
    assert again.detect_slots == plan.detect_slots and _plan(corpus, 0, 1)[1].detect_slots != plan.detect_slots
    for seed in range(30):  # no window is drawn twice, for any seed
        _, drawn = _plan(corpus, 1, seed)
        assert len(set(drawn.detect_slots)) == len(drawn.detect_slots)
        assert len({w.tokens for w in drawn.sim}) == len(drawn.sim)


def _windows_acts(examples, slots):
    from sae_models.evals.autointerp import _windows

    return _windows(examples.top, 0, slots, lambda ids: [str(i) for i in ids], True)
