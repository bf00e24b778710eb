import pytest
import torch

from sae_models.lm import ExtractionConfig, iter_activations, load_lm
from sae_models.sae import SAEConfig, build_sae
from sae_models.sae.metrics import downstream_metrics, reconstruction_metrics

TEXTS = ["the furry puppy chased a cake near the barn .", "question : tell me about space . answer : a rocket ."] * 4


@pytest.fixture(scope="module")
def lm_and_acts(trained_toy_lm):
    lm = load_lm(str(trained_toy_lm))
    batches = list(iter_activations(lm, enumerate(TEXTS), ExtractionConfig(act_dtype="float32"), layer=1))
    return lm, torch.cat([torch.from_numpy(b.act) for b in batches])


def test_an_exact_dictionary_scores_perfectly(lm_and_acts):
    lm, acts = lm_and_acts
    pca = build_sae(SAEConfig("pca", lm.d_model, 2 * lm.d_model)).fit(acts)
    metrics, stats = reconstruction_metrics(pca, acts.split(16))
    assert metrics.explained_variance == pytest.approx(1.0, abs=1e-4)
    assert metrics.cossim == pytest.approx(1.0, abs=1e-4) and metrics.l2_ratio == pytest.approx(1.0, abs=1e-4)
    assert metrics.mse < 1e-6 and metrics.tokens == len(acts)
    assert metrics.l0 == pytest.approx(lm.d_model, abs=1)  # one of each +/- pair fires per direction
    codes = pca.encode(acts).detach()
    assert stats.max_activation == pytest.approx(codes.max(0).values.numpy(), rel=1e-5)
    down = downstream_metrics(pca, lm, TEXTS, layer=1, site="resid_post")
    assert down.ce_loss_score == pytest.approx(1.0, abs=1e-3)
    assert down.kl_div_score == pytest.approx(1.0, abs=1e-3) and down.kl_sae < 1e-5


def test_a_dictionary_that_reconstructs_nothing_scores_zero(lm_and_acts):
    lm, acts = lm_and_acts
    sae = build_sae(SAEConfig("topk", lm.d_model, 64, k=4))
    with torch.no_grad():
        sae.W_dec.zero_()
    down = downstream_metrics(sae, lm, TEXTS, layer=1, site="resid_post")
    assert down.ce_loss_score == pytest.approx(0.0, abs=1e-4)
    assert down.kl_div_score == pytest.approx(0.0, abs=1e-4)
    metrics, _ = reconstruction_metrics(sae, acts.split(16))
    assert metrics.explained_variance < 0.01 and metrics.l0 == pytest.approx(4.0)


def test_the_ce_loss_score_is_null_where_zeroing_the_layer_costs_the_model_nothing(random_models):
    """An untrained model (a control twin) barely notices its residual stream zeroed: CE_zero - CE_clean is then
    ~0 (here below 0: zeroing helps) and the ratio would be noise (-1.4e9 on the demo's toy-qwen2 twin); it is
    null instead, the CEs beside it."""
    from sae_models.sae.metrics import MIN_CE_GAP

    lm = load_lm(str(random_models["qwen2"]))
    sae = build_sae(SAEConfig("topk", lm.d_model, 64, k=4))
    down = downstream_metrics(sae, lm, TEXTS, layer=1, site="resid_post")
    assert down.ce_zero - down.ce_clean < MIN_CE_GAP and down.ce_loss_score is None
    assert down.ce_clean > 0 and down.ce_sae > 0
