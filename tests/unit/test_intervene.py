"""The intervention module on four families (random weights): padding per call, the three edits, the logit
lens against the model's own logits."""

import pytest
import torch

from sae_models.lm import edit_output, hook_module, load_lm
from sae_models.lm.intervene import add_vectors, last_position, logit_lens, set_codes, splice, tokenize
from sae_models.sae import SAEConfig, build_sae

FAMILIES = ["gemma2", "qwen2", "llama", "gpt2"]
TEXTS = ["the farmer sold fresh bread at the market .", "alice gave a gift to bob ."]


@pytest.fixture(scope="module", params=FAMILIES)
def lm(request, random_models):
    return load_lm(str(random_models[request.param]))


def _last_logits(lm, enc, edit=None, layer=1):
    module = hook_module(lm.model, layer, "resid_post")
    with torch.no_grad():
        if edit is None:
            return lm.model(**enc).logits
        with edit_output(module, edit):
            return lm.model(**enc).logits


def test_left_padding_puts_every_last_token_at_the_end_and_matches_unpadded_runs(lm):
    enc = tokenize(lm, TEXTS, padding_side="left")
    assert enc["attention_mask"][:, -1].all() and not enc["attention_mask"][1, 0]
    batched = _last_logits(lm, enc)[:, -1]
    for i, text in enumerate(TEXTS):
        alone = _last_logits(lm, tokenize(lm, [text]))[0, -1]
        assert torch.allclose(batched[i], alone, atol=1e-4), lm.family
    right = tokenize(lm, TEXTS, padding_side="right")
    assert right["attention_mask"][:, 0].all() and lm.tokenizer.padding_side == "right"  # the call changed nothing
    assert last_position(right["attention_mask"]).sum(1).tolist() == [1, 1]
    assert torch.equal(last_position(enc["attention_mask"])[:, -1], torch.tensor([True, True]))


def test_add_vectors_moves_only_the_chosen_rows_and_positions(lm):
    enc = tokenize(lm, TEXTS, padding_side="left")
    clean = _last_logits(lm, enc)
    vectors = torch.zeros(2, lm.d_model)  # row 0 random, not constant: a LayerNorm cancels a uniform shift
    vectors[0] = 5.0 * torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0))
    steered = _last_logits(lm, enc, add_vectors(vectors, last_position(enc["attention_mask"])))
    assert not torch.allclose(steered[0, -1], clean[0, -1], atol=1e-3)  # row 0, last position: moved
    assert torch.allclose(steered[0, :-1], clean[0, :-1], atol=1e-5)  # earlier positions: causal, untouched
    assert torch.allclose(steered[1][2:], clean[1][2:], atol=1e-5)  # a zero vector: no change (but to pads)
    everywhere = _last_logits(lm, enc, add_vectors(vectors))
    assert not torch.allclose(everywhere[0, 2], clean[0, 2], atol=1e-3)


def test_set_codes_keeps_the_reconstruction_error_and_changes_only_what_the_codes_change(lm):
    torch.manual_seed(0)
    sae = build_sae(SAEConfig("topk", lm.d_model, 4 * lm.d_model, k=4))
    enc = tokenize(lm, TEXTS, padding_side="left")
    clean = _last_logits(lm, enc)
    assert torch.allclose(_last_logits(lm, enc, set_codes(sae, lambda c: c)), clean, atol=1e-4)
    assert not torch.allclose(_last_logits(lm, enc, splice(lambda h: sae(h.float()))), clean, atol=1e-3)

    def boost(codes):
        out = codes.clone()
        out[:, 7] += 10.0
        return out

    boosted = _last_logits(lm, enc, set_codes(sae, boost, last_position(enc["attention_mask"])))
    real = enc["attention_mask"][:, :-1].bool()  # pad positions attend to nothing real: their logits are noise
    assert torch.allclose(boosted[:, :-1][real], clean[:, :-1][real], atol=1e-4)
    assert not torch.allclose(boosted[:, -1], clean[:, -1], atol=1e-3)


def test_logit_lens_of_the_last_layer_is_the_models_own_logits(lm):
    enc = tokenize(lm, TEXTS[:1])
    module = hook_module(lm.model, lm.n_layers - 1, "resid_post")
    store = []
    with torch.no_grad(), edit_output(module, lambda h: store.append(h) or h):
        logits = lm.model(**enc).logits[0]
    lens = logit_lens(lm, store[0][0])
    assert torch.allclose(lens, logits.float(), atol=1e-4), lm.family
