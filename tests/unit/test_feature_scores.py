"""Output scores and Delta Token Confidence: the cached, batched last-step path against the whole prompt run
once per latent, on four families; the formulas on hand-made distributions; bad input."""

import math

import pytest
import torch

from sae_models.evals.config import SelectionConfig
from sae_models.evals.feature_scores import (
    FeatureScoreError,
    _code_update,
    intervened_logits,
    naive_delta_c,
    output_scores,
    prompt_state,
    run_feature_scores,
    token_confidence,
)
from sae_models.lm import hook_module, load_lm
from sae_models.sae import SAEConfig, build_sae

FAMILIES = ["gemma2", "qwen2", "llama", "gpt2"]
PROMPT = "the farmer sold fresh bread at"  # several tokens in the toy vocabulary


@pytest.fixture(scope="module", params=FAMILIES)
def lm_and_sae(request, random_models):
    lm = load_lm(str(random_models[request.param]))
    torch.manual_seed(0)
    sae = build_sae(SAEConfig("relu", lm.d_model, 4 * lm.d_model, sparsity_coefficient=0.1))
    with torch.no_grad():
        sae.b_enc.fill_(0.5)  # every code positive at the prompt's last token, so a_max > 0
    return lm, sae


def test_the_cached_batched_path_equals_the_whole_prompt_per_latent(lm_and_sae):
    lm, sae = lm_and_sae
    cfg = SelectionConfig(prompt=PROMPT, batch_size=7, scale=2.0)
    latents = list(range(0, 4 * lm.d_model, 9))
    run = run_feature_scores(lm, sae, 1, "resid_post", latents, cfg)
    by_latent = {r.latent: r for r in run.rows}
    five = cfg.model_copy(update={"rank_k": 5})
    for f in latents[:4]:
        assert by_latent[f].delta_c1 == pytest.approx(naive_delta_c(lm, sae, 1, "resid_post", f, cfg), abs=1e-4)
        assert by_latent[f].delta_c5 == pytest.approx(naive_delta_c(lm, sae, 1, "resid_post", f, five), abs=1e-4)
    vocab = len(lm.tokenizer)
    assert all(r.output_score == pytest.approx((1 - r.lens_rank / vocab) * r.lens_prob) for r in run.rows)
    base = prompt_state(lm, PROMPT).base_logits
    assert run.summary.base_token == lm.tokenizer.convert_ids_to_tokens([int(base.argmax())])[0]
    assert 0 < run.summary.seconds < 300
    assert len({round(r.delta_c1, 6) for r in run.rows}) > 1  # latents differ: the edit reached the logits
    again = run_feature_scores(lm, sae, 1, "resid_post", latents, cfg.model_copy(update={"batch_size": 64}))
    assert [r.delta_c1 for r in again.rows] == pytest.approx([r.delta_c1 for r in run.rows], abs=1e-5)
    ups = sorted(run.rows, key=lambda r: r.up_rank)
    assert [r.up_rank for r in ups] == list(range(1, len(latents) + 1))
    assert ups[0].delta_c1 == max(r.delta_c1 for r in run.rows) and ups[0].down_rank == len(latents)
    assert all(len(r.lens_tokens) == 20 and 0 <= r.output_score <= r.lens_prob <= 1 for r in run.rows)


def test_zeroing_the_other_codes_is_a_different_intervention(lm_and_sae):
    lm, sae = lm_and_sae
    cfg = SelectionConfig(prompt=PROMPT, zero_others=True, scale=2.0, batch_size=1)  # a batch per latent
    run = run_feature_scores(lm, sae, 1, "resid_post", [3, 5], cfg)
    assert any(abs(r.delta_c1_zeroed - r.delta_c1) > 1e-4 for r in run.rows)
    module = hook_module(lm.model, 1, "resid_post")
    state = prompt_state(lm, PROMPT)
    for r in run.rows:  # DeltaC_k of the zeroed intervention: its confidence minus the unedited one
        zeroed = intervened_logits(lm, sae, module, state, [r.latent], 2.0 * run.summary.a_max, zero_others=True)
        for k, value in ((1, r.delta_c1_zeroed), (5, r.delta_c5_zeroed)):
            expected = token_confidence(zeroed, k)[0] - token_confidence(state.base_logits[None], k)[0]
            assert value == pytest.approx(float(expected), abs=1e-5)
    codes = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert _code_update(torch.tensor([2, 0]), 10.0, True)(codes).tolist() == [[0, 0, 13], [14, 0, 0]]
    assert _code_update(torch.tensor([2, 0]), 10.0, False)(codes).tolist() == [[1, 2, 13], [14, 5, 6]]


def test_token_confidence_and_the_output_score_on_hand_made_distributions():
    probs = torch.tensor([[0.5, 0.25, 0.125, 0.125], [0.25, 0.25, 0.25, 0.25]])
    logits = probs.log() + torch.tensor([[3.0], [-1.0]])  # any shift per row: the same distribution
    assert token_confidence(logits, 1).tolist() == pytest.approx([math.log(2), math.log(4)])
    assert token_confidence(logits, 2)[0] == pytest.approx((math.log(2) + math.log(4)) / 2)
    lens = torch.tensor([[2, 1], [3, 0]])  # row 0: tokens ranked 2 and 1; row 1: a four-way tie, rank 0
    r, p, s = output_scores(logits, lens)
    assert r.tolist() == [1, 0] and p.tolist() == pytest.approx([0.25, 0.25])
    assert s.tolist() == pytest.approx([(1 - 1 / 4) * 0.25, 0.25])


def test_bad_input_is_one_error_naming_it(lm_and_sae):
    lm, sae = lm_and_sae
    d_sae = 4 * lm.d_model
    with pytest.raises(FeatureScoreError, match=rf"^latents \[{d_sae}, {d_sae + 1}, {d_sae + 2}, {d_sae + 3}, "
                                                rf"{d_sae + 4}\] are out of range: the SAE has {d_sae} latents$"):
        run_feature_scores(lm, sae, 1, "resid_post", list(range(d_sae, d_sae + 6)), SelectionConfig(prompt=PROMPT))
    with pytest.raises(FeatureScoreError, match=r"^no latent to score \(the SAE has no live latent\)$"):
        run_feature_scores(lm, sae, 1, "resid_post", [], SelectionConfig(prompt=PROMPT))
    with pytest.raises(ValueError, match="rank_k must be 1 or 5"):
        SelectionConfig(rank_k=2)


def test_a_prompt_of_one_token_is_refused(random_models):
    lm = load_lm(str(random_models["gpt2"]))
    with pytest.raises(FeatureScoreError, match=r"'' is 1 token\(s\): the scores need at least two \(a prefix to "
                                                r"cache and a last position to edit\)$"):  # BOS alone
        prompt_state(lm, "")
    assert prompt_state(lm, "the").position == 1  # BOS and one word: enough
    with pytest.raises(ValueError, match="prompt is empty"):
        SelectionConfig(prompt=" ")


def test_a_max_falls_back_to_the_prompts_other_tokens_when_no_latent_fires_at_the_last(random_models):
    """A thresholded SAE can leave the prompt's last token with no code above 0 (BatchTopK at k 4 did on the
    toy Qwen-2): a_max is then the largest code at the prompt's other tokens, logged; nowhere is an error."""
    from sae_models.evals.feature_scores import prompt_a_max
    from sae_models.lm import capture
    from sae_models.lm.intervene import tokenize

    lm = load_lm(str(random_models["gpt2"]))
    module = hook_module(lm.model, 1, "resid_post")
    with torch.inference_mode(), capture(module) as seen:
        lm.model(**tokenize(lm, [PROMPT]))
    first, last = seen[0][0, 0].float(), seen[0][0, -1].float()
    sae = build_sae(SAEConfig("relu", lm.d_model, 8, sparsity_coefficient=0.1))
    with torch.no_grad():  # latent 0 fires at the first token only, by 1; the others never
        w = first - last
        sae.b_dec.zero_()
        sae.W_enc.zero_()
        sae.W_enc[:, 0] = 2 * w / w.dot(w)
        sae.b_enc.fill_(-1.0)
        sae.b_enc[0] = float(1 - 2 * w.dot(first) / w.dot(w))
    logged = []
    assert prompt_a_max(lm, sae, module, PROMPT, logged.append) == pytest.approx(1.0, rel=1e-4)
    assert logged and "no latent fires at the last token" in logged[0]
    assert logged[0].endswith("the largest code at any of its tokens")
    run = run_feature_scores(lm, sae, 1, "resid_post", [0, 1], SelectionConfig(prompt=PROMPT))
    assert run.summary.a_max == pytest.approx(1.0, rel=1e-4)
    with torch.no_grad():
        sae.b_enc[0] = -1e6
    with pytest.raises(FeatureScoreError, match="every code is <= 0 at every token of .*no latent can be raised by "
                                                "s x a_max; choose another \\[selection\\] prompt$"):
        prompt_a_max(lm, sae, module, PROMPT)
    with pytest.raises(FeatureScoreError, match="every code is <= 0 at every token of"):
        prompt_a_max(lm, sae, module, PROMPT, fallback=0.0)  # a corpus where nothing fired is no fallback
    silent = run_feature_scores(lm, sae, 1, "resid_post", [0, 1], SelectionConfig(prompt=PROMPT), corpus_max=3.5)
    assert silent.summary.a_max == 3.5
    logged.clear()  # a dictionary silent on the whole prompt (an oracle can be) takes its corpus-wide largest code
    assert prompt_a_max(lm, sae, module, PROMPT, logged.append, fallback=3.5) == 3.5
    assert "no latent fires at any token" in logged[0] and "activation corpus" in logged[0]
    assert prompt_a_max(lm, sae, module, PROMPT, fallback=0.5) == 0.5
    logged.clear()
    with torch.no_grad():  # latent 0 at 2.5 on the first token and 0.5 on the last: the last token's code
        sae.b_enc[0] = float(2.5 - 2 * w.dot(first) / w.dot(w))
    assert prompt_a_max(lm, sae, module, PROMPT, logged.append) == pytest.approx(0.5, rel=1e-3) and not logged
