import numpy as np
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


def _with_tokens(acts: torch.Tensor, size: int = 16):
    """(token ids, activations) batches; the ids are stand-ins (the metrics but ``token_eta2`` ignore them)."""
    return [(torch.arange(len(a)) % 5, a) for a in acts.split(size)]


def test_an_exact_dictionary_scores_perfectly(lm_and_acts):
    lm, acts = lm_and_acts
    pca = build_sae(SAEConfig("pca", lm.d_model, 2 * lm.d_model)).fit(acts)
    metrics, stats = reconstruction_metrics(pca, _with_tokens(acts))
    assert metrics.explained_variance == pytest.approx(1.0, abs=1e-4)
    assert metrics.cossim == pytest.approx(1.0, abs=1e-4) and metrics.l2_ratio == pytest.approx(1.0, abs=1e-4)
    assert metrics.mse < 1e-6 and metrics.tokens == len(acts)
    assert metrics.l0 == pytest.approx(lm.d_model, abs=1)  # one of each +/- pair fires per direction
    codes = pca.encode(acts).detach()
    # abs: a direction the activations do not span has float-noise codes (~1e-7), summed in another order
    assert stats.max_activation == pytest.approx(codes.max(0).values.numpy(), rel=1e-5, abs=1e-5)
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
    metrics, _ = reconstruction_metrics(sae, _with_tokens(acts))
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


def _eta2_by_hand(tokens: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """eta squared per column, straight from its definition: between-type over total sum of squares."""
    mean = codes.mean(0)
    total = ((codes - mean) ** 2).sum(0)
    between = sum((tokens == t).sum() * (codes[tokens == t].mean(0) - mean) ** 2 for t in np.unique(tokens))
    return between / total


def test_token_eta2_is_the_share_of_variance_the_token_explains():
    """Latent 0 is a function of the token, latent 1 is noise on one token type, latent 2 a token effect plus as
    much context noise, latent 3 never fires; streamed in uneven batches, each matches the definition."""
    from sae_models.sae.metrics import CONTEXTUAL_BELOW, TokenIdentityShare

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 40, 3000)
    codes = np.zeros((3000, 4))
    codes[:, 0] = np.where(tokens % 3 == 0, tokens / 10, 0)
    codes[:, 1] = np.where(tokens == 7, rng.exponential(1.0, 3000), 0) * (rng.random(3000) < 0.3)
    codes[:, 2] = np.maximum(0, np.where(tokens < 20, 1.0, 0.0) + rng.normal(0, 0.5, 3000))
    share = TokenIdentityShare(4)
    for lo, hi in ((0, 7), (7, 1000), (1000, 3000)):
        share.add(torch.from_numpy(tokens[lo:hi]), torch.from_numpy(codes[lo:hi]).float())
    eta2 = share.eta2()
    expected = _eta2_by_hand(tokens, codes[:, :3])
    assert eta2[:3] == pytest.approx(expected, abs=1e-5)
    assert eta2[0] == pytest.approx(1.0) and eta2[1] < CONTEXTUAL_BELOW < eta2[0] and np.isnan(eta2[3])
    assert 0.2 < eta2[2] < 0.8
