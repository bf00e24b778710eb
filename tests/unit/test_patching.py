"""Feature patching: the batched, resumed path against full forward passes one prompt at a time, on four
families and two hook sites; the greedy path and its frontier; exact bases; bad input."""

import numpy as np
import pytest
import torch

from sae_models.evals.config import PatchingConfig
from sae_models.evals.patching import (
    Patcher,
    PatchingError,
    PromptPair,
    drops_at,
    greedy_path,
    naive_patched_kl,
    prepare_pairs,
    run_patching,
    toyworld_ioi_pairs,
)
from sae_models.lm import hook_module, load_lm
from sae_models.lm.intervene import resume_from, tokenize
from sae_models.sae import SAEConfig, build_sae
from sae_models.sae.baselines import BaselineDictionary
from sae_models.sae.sweep import SAEIdentity

FAMILIES = ["gemma2", "qwen2", "llama", "gpt2"]
IDENTITY = SAEIdentity("relu", is_baseline=False, level=0.1, target_l0=None, l0=0.0)


@pytest.fixture(scope="module", params=FAMILIES)
def lm(request, random_models):
    return load_lm(str(random_models[request.param]))


def _sae(lm, seed: int = 0):
    torch.manual_seed(seed)
    sae = build_sae(SAEConfig("relu", lm.d_model, 2 * lm.d_model, sparsity_coefficient=0.1))
    with torch.no_grad():
        sae.b_enc.fill_(0.2)  # many codes positive, so many latents differ between the runs
    return sae


def _pairs(n: int, seed: int = 0) -> list[PromptPair]:
    fit, _ = toyworld_ioi_pairs(n, 0, seed)
    return fit


def test_resume_from_gives_the_full_forward_and_restores_the_blocks(lm):
    enc = tokenize(lm, [p.clean for p in _pairs(3)], padding_side="left")
    module = hook_module(lm.model, 1, "resid_post")
    with torch.inference_mode():
        from sae_models.lm.hooks import capture

        with capture(module) as seen:
            full = lm.model(**enc).logits[:, -1]
        with resume_from(lm.model, 1, seen[0]):
            resumed = lm.model(**enc, logits_to_keep=1).logits[:, -1]
        again = lm.model(**enc).logits[:, -1]
    torch.testing.assert_close(resumed, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(again, full)  # the blocks run their own forward again


@pytest.mark.parametrize("hook", ["resid_post", "mlp_out"])
def test_batched_patching_equals_one_full_run_per_pair_and_set(lm, hook):
    sae, pairs = _sae(lm), _pairs(3)
    longer = pairs[0]  # a pair one token longer: the others are left-padded in the batch
    pairs[0] = PromptPair(f"question {longer.clean}", f"question {longer.counterfactual}", longer.answer,
                          longer.counter_answer)
    patcher = Patcher(lm, 1, hook, sae, prepare_pairs(lm, hook_module(lm.model, 1, hook), pairs), batch_size=5)
    candidates = patcher.candidates()
    assert len(candidates) > 4
    rng = np.random.default_rng(0)
    for size in (1, 3, len(candidates)):
        latents = sorted(rng.choice(candidates, size, replace=False).tolist())
        batched = patcher.effect(latents).kl
        naive = [naive_patched_kl(lm, sae, 1, hook, pair, latents) for pair in pairs]
        np.testing.assert_allclose(batched, naive, rtol=1e-3, atol=1e-5)
    # drop scores are the mean KL of each one-smaller set
    scores = patcher.drop_scores(candidates[:4]).cpu().numpy()
    expected = [patcher.effect([c for c in candidates[:4] if c != left_out]).kl.mean() for left_out in candidates[:4]]
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6)


# Two forward passes of the same inputs in different batches round differently: float32 log-probabilities of
# about -6 carry ~5e-7 each, so a KL of 1e-5 computed twice can differ by that much (seen on some CPUs).
FLOAT32_KL = 1e-6


def test_an_exact_basis_patched_in_full_is_the_counterfactual_run(lm):
    from sae_models.lm.hooks import capture

    pairs = _pairs(4)
    module = hook_module(lm.model, 1, "resid_post")
    with torch.inference_mode(), capture(module) as seen:
        lm.model(**tokenize(lm, [p.clean for p in pairs]))
    neuron = BaselineDictionary(SAEConfig("neuron", lm.d_model, 2 * lm.d_model)).fit(seen[0].reshape(-1, lm.d_model))
    patcher = Patcher(lm, 1, "resid_post", neuron, prepare_pairs(lm, module, pairs), batch_size=64)
    full, none = patcher.effect(patcher.candidates()), patcher.effect([])
    batch = patcher.batch
    torch.testing.assert_close(batch.clean_hidden + patcher.added(patcher.candidates()), batch.counter_hidden,
                               atol=1e-4, rtol=1e-4)
    assert np.abs(full.kl).max() < 1e-6
    assert (full.flipped == (batch.counter_logprobs.argmax(-1) == batch.counter_answer).cpu().numpy()).all()
    counter, clean = patcher.batch.counter_logprobs, patcher.batch.clean_logprobs
    np.testing.assert_allclose(none.kl, (counter.exp() * (counter - clean)).sum(-1).cpu().numpy(), rtol=1e-3,
                               atol=FLOAT32_KL)
    assert none.edit.max() == 0


def test_greedy_drops_the_least_harmful_latent_and_the_frontier_follows_the_path(lm):
    sae, pairs = _sae(lm, seed=1), _pairs(2)
    patcher = Patcher(lm, 1, "resid_post", sae, prepare_pairs(lm, hook_module(lm.model, 1, "resid_post"), pairs),
                      batch_size=64)
    start, dropped, path = greedy_path(patcher, [float("inf")])
    assert sorted(dropped) == sorted(start) and len(path) == len(start)
    first = [patcher.effect([c for c in start if c != x]).kl.mean() for x in start]
    # the least harmful drop, up to float32 ties between latents whose removal costs the same KL
    assert first[start.index(dropped[0])] == pytest.approx(min(first), rel=1e-3, abs=FLOAT32_KL)
    assert path[0] == pytest.approx(min(first), rel=1e-3, abs=FLOAT32_KL)
    # lazy greedy: every drop's KL is the exact KL of the set it leaves
    _, lazy_dropped, lazy_path = greedy_path(patcher, [float("inf")], refresh_every=4, shortlist=3)
    for j in (0, 5, len(start) // 2):
        kept = [c for c in start if c not in lazy_dropped[:j + 1]]
        assert lazy_path[j] == pytest.approx(patcher.effect(kept).kl.mean(), rel=1e-3, abs=FLOAT32_KL)

    cfg = PatchingConfig(thresholds=(1e-4, 1e-2, 1.0, 100.0), batch_size=64)
    run = run_patching(lm, sae, 1, "resid_post", pairs, _pairs(3, seed=5), cfg, IDENTITY)
    sizes = [r.n_latents for r in run.rows]
    assert sizes == sorted(sizes, reverse=True)
    for row in run.rows:
        assert not row.reached or row.kl_fit <= row.threshold
        assert row.n_latents == len(row.latents) <= row.n_candidates
    assert run.rows[-1].n_latents == 0  # above the unpatched KL, nothing needs patching
    assert run.rows[-1].kl_random_set == pytest.approx(run.rows[-1].kl_unpatched)  # an empty random set too
    full = [r for r in run.rows if r.n_latents == r.n_candidates]
    # a random set of as many latents as differ is the same set
    assert all(r.kl_random_set == pytest.approx(r.kl, rel=1e-3, abs=FLOAT32_KL) for r in full)
    assert run.summary.patched_runs > 0 and run.rows[0].n_pairs == 2 and run.rows[0].n_eval_pairs == 3


class _Redundant:
    """A Patcher stand-in: the KL of a kept set is the summed weight of the dropped latents, plus 5 nats once
    two of the cheap latents 0..4 are both dropped (they back each other up, so their last scores mislead)."""

    def candidates(self) -> list[int]:
        return list(range(10))

    def kl(self, kept: set[int]) -> float:
        dropped = set(range(10)) - kept
        return sum(0.01 if i < 5 else 0.1 for i in dropped) + (5.0 if len(dropped & set(range(5))) >= 2 else 0.0)

    def drop_scores(self, latents, left_out=None) -> torch.Tensor:
        return torch.tensor([self.kl(set(latents) - {x}) for x in (latents if left_out is None else left_out)])


def test_lazy_greedy_stops_only_where_no_removal_stays_under_the_threshold():
    """At each threshold's stopping set the exact best removal is above the threshold: a lazy step whose
    shortlist would cross one is rescored in full (the shortlist alone, here the backed-up latents 1 and 2,
    would stop at 5.02 nats with 0.11 reachable)."""
    stand_in, thresholds = _Redundant(), [1.0, 10.0]
    start, dropped, path = greedy_path(stand_in, thresholds, refresh_every=4, shortlist=2)
    assert dropped[0] in range(5) and dropped[1] in range(5, 10)
    for t in thresholds:
        kept = set(start) - set(dropped[:drops_at(path, t)])
        assert not kept or float(stand_in.drop_scores(sorted(kept)).min()) > t
    np.testing.assert_allclose(path, greedy_path(stand_in, thresholds)[2])  # here as good as exact greedy


def test_toyworld_pairs_are_held_out_disjoint_and_seeded():
    fit, held = toyworld_ioi_pairs(8, 64, seed=0)
    assert len(fit) == 8 and len(held) == 64 and not set(fit) & set(held)
    assert toyworld_ioi_pairs(8, 64, seed=0) == (fit, held) != toyworld_ioi_pairs(8, 64, seed=1)
    for pair in fit + held:  # the names swapped, the order kept: each prompt's answer is its name given once
        clean, counter = pair.clean.split(), pair.counterfactual.split()
        assert (clean[1], clean[3]) == (counter[3], counter[1]) and clean[9] == pair.counter_answer
        assert pair.answer == ({clean[1], clean[3]} - {clean[9]}).pop()
    assert {p.clean.split()[1] == p.answer for p in held} == {True, False}  # ABBA and BABA prompts
    with pytest.raises(PatchingError, match="1216 held-out"):
        toyworld_ioi_pairs(1000, 500, seed=0)


def test_bad_input_is_one_error_naming_it(random_models):
    lm = load_lm(str(random_models["qwen2"]))
    module = hook_module(lm.model, 1, "resid_post")
    good = _pairs(1)[0]
    with pytest.raises(PatchingError, match="'alice bob' is not one token"):
        prepare_pairs(lm, module, [PromptPair(good.clean, good.counterfactual, "alice bob", good.counter_answer)])
    with pytest.raises(PatchingError, match="the same length"):
        prepare_pairs(lm, module, [PromptPair(good.clean, good.counterfactual + " the", good.answer, "bob")])
    with pytest.raises(PatchingError, match="no prompt pair"):
        prepare_pairs(lm, module, [])
    with pytest.raises(PatchingError, match="empty latent set"):
        naive_patched_kl(lm, _sae(lm), 1, "resid_post", good, [])
    dead = _sae(lm)
    with torch.no_grad():
        dead.b_enc.fill_(-1e6)  # no code is ever positive: nothing differs, nothing to patch
    with pytest.raises(PatchingError, match="nothing to patch"):
        run_patching(lm, dead, 1, "resid_post", [good], [good], PatchingConfig(), IDENTITY)
    for thresholds in [(0.0, 1.0), (-1.0,), (float("nan"),), ()]:
        with pytest.raises(ValueError, match="threshold"):
            PatchingConfig(thresholds=thresholds)
    assert PatchingConfig(variants=("topk-*", "pca")).patches("topk-k8")
    assert not PatchingConfig(variants=("topk-*", "pca")).patches("relu-0.1")
