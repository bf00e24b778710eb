import numpy as np
import pytest
import torch

from sae_models.lm import (
    ExtractionConfig,
    HookPointError,
    ModelLoadError,
    capture,
    edit_output,
    hook_module,
    iter_activations,
    load_lm,
)
from sae_models.lm.hooks import decoder_layers

FAMILIES = ["gemma2", "qwen2", "llama", "gpt2"]
DOCS = [
    (10, "the furry puppy chased a cake ."),
    (11, "when alice and bob went to the park , bob gave a gift to alice ."),
]


@pytest.mark.parametrize("family", FAMILIES)
def test_resid_post_equals_the_hidden_state_after_the_block(random_models, family):
    lm = load_lm(str(random_models[family]))
    batch = next(iter_activations(lm, DOCS[:1], ExtractionConfig(act_dtype="float32"), layer=1))
    ids = lm.tokenizer(DOCS[0][1], return_tensors="pt")["input_ids"]
    hidden = lm.model(input_ids=ids, output_hidden_states=True).hidden_states[2][0]
    assert batch.act.shape == (ids.shape[1] - 1, lm.d_model)  # BOS masked
    np.testing.assert_allclose(batch.act, hidden[1:].numpy(), rtol=1e-5, atol=1e-5)
    assert list(batch.pos) == list(range(1, ids.shape[1])) and set(batch.doc_id) == {10}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("site", ["mlp_out", "attn_out"])
def test_sublayer_sites_capture_what_is_added_to_the_stream(random_models, family, site):
    lm = load_lm(str(random_models[family]))
    module = hook_module(lm.model, 1, site)
    ids = lm.tokenizer(DOCS[0][1], return_tensors="pt")["input_ids"]
    with capture(module) as store:
        lm.model(input_ids=ids)
    assert store[0].shape == (1, ids.shape[1], lm.d_model)
    batch = next(iter_activations(lm, DOCS[:1], ExtractionConfig(act_dtype="float32"), layer=1, site=site))
    np.testing.assert_allclose(batch.act, store[0][0, 1:].numpy(), rtol=1e-5, atol=1e-5)


def test_extraction_never_runs_the_layers_above(random_models):
    lm = load_lm(str(random_models["llama"]))
    calls = []
    handles = [layer.register_forward_hook(lambda *_, i=i: calls.append(i))
               for i, layer in enumerate(decoder_layers(lm.model))]
    handles.append(lm.model.lm_head.register_forward_hook(lambda *_: calls.append("lm_head")))
    list(iter_activations(lm, DOCS, ExtractionConfig(), layer=0))
    for h in handles:
        h.remove()
    assert calls == [0]


def test_bos_pad_eos_are_masked_and_budget_is_exact(random_models):
    lm = load_lm(str(random_models["gemma2"]))
    docs = [(0, "a puppy . <eos>"), (1, "the furry puppy chased a cake near the barn .")]
    batches = list(iter_activations(lm, docs, ExtractionConfig(batch_size=2), layer=0))
    masked = {lm.tokenizer.bos_token_id, lm.tokenizer.eos_token_id, lm.tokenizer.pad_token_id}
    assert not masked & set(np.concatenate([b.token_id for b in batches]).tolist())
    assert sum(len(b) for b in batches) == 3 + 10
    capped = list(iter_activations(lm, docs * 5, ExtractionConfig(batch_size=2), layer=0, max_tokens=17))
    assert sum(len(b) for b in capped) == 17


def test_outlier_tokens_above_the_norm_multiple_are_dropped(random_models):
    lm = load_lm(str(random_models["qwen2"]))
    module = hook_module(lm.model, 0, "resid_post")

    def spike(h):
        h = h.clone()
        h[:, 2] *= 1000
        return h

    with edit_output(module, spike):
        kept = list(iter_activations(lm, DOCS, ExtractionConfig(drop_outlier_norm=10.0), layer=0))
    assert sum(b.dropped_outliers for b in kept) == 2
    assert 2 not in set(np.concatenate([b.pos for b in kept]).tolist())


def test_edit_output_changes_downstream_computation_and_is_removed(random_models):
    lm = load_lm(str(random_models["gemma2"]))
    ids = lm.tokenizer(DOCS[0][1], return_tensors="pt")["input_ids"]
    base = lm.model(input_ids=ids).logits
    with edit_output(hook_module(lm.model, 0, "resid_post"), lambda h: h + 5.0):
        steered = lm.model(input_ids=ids).logits
    assert not torch.allclose(base, steered)
    assert torch.allclose(base, lm.model(input_ids=ids).logits)


def test_layer_out_of_range_and_unknown_site_are_clear_errors(random_models):
    lm = load_lm(str(random_models["gpt2"]))
    with pytest.raises(HookPointError, match="layer 3 is out of range.*3 layers"):
        hook_module(lm.model, 3, "resid_post")
    with pytest.raises(HookPointError, match="hook site 'resid_pre'"):
        hook_module(lm.model, 0, "resid_pre")


def test_missing_directory_and_unreachable_hub_id_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"model source '.*nope': no such directory"):
        load_lm(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError) as err:
        load_lm("google/gemma-2-2b")
    assert "'google/gemma-2-2b'" in str(err.value) and "\n" not in str(err.value)
