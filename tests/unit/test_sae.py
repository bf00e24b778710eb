"""SAE library: hand-worked reference values, recovery of known directions, SAELens round trips, bad input."""

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sae_models.sae import SAECheckpointError, SAEConfig, SAEConfigError, build_sae, load_sae, save_sae
from sae_models.sae.train import TrainConfig, TrainingError, train_sae
from tests.sae_helpers import sparse_directions_data

D, F = 2, 3
X = torch.tensor([[1.0, 2.0]])


def _set(sae, **tensors):
    with torch.no_grad():
        for name, value in tensors.items():
            getattr(sae, name).copy_(torch.tensor(value))
    return sae


def _tiny(arch, **kw):
    cfg = SAEConfig(arch, D, F, **kw)
    sae = build_sae(cfg)
    return _set(sae, W_dec=[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], b_dec=[0.5, 0.0])


W_ENC = [[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]]  # columns: latent 0 reads x0, latent 1 reads x1, latent 2 x0 - x1


def test_relu_reference_forward_and_loss():
    sae = _set(_tiny("relu", sparsity_coefficient=0.5), W_enc=W_ENC, b_enc=[0.0, 0.0, 0.1])
    # x - b_dec = (0.5, 2);  pre = (0.5, 2, -1.4) -> f = (0.5, 2, 0)
    assert torch.allclose(sae.encode(X), torch.tensor([[0.5, 2.0, 0.0]]))
    # x_hat = 0.5*(1,0) + 2*(0,1) + b_dec = (1, 2): exact
    loss = sae.training_loss(X, 1.0, None)
    assert torch.allclose(loss.x_hat, X) and loss.mse.item() == 0.0
    assert math.isclose(loss.total.item(), 0.5 * (0.5 * 1 + 2 * 1), rel_tol=1e-6)


def test_topk_reference_forward_and_loss():
    sae = _set(_tiny("topk", k=1), W_enc=W_ENC, b_enc=[0.0, 0.0, 0.0])
    assert torch.allclose(sae.encode(X), torch.tensor([[0.0, 2.0, 0.0]]))
    loss = sae.training_loss(X, 1.0, None)
    # x_hat = 2*(0,1) + (0.5, 0) = (0.5, 2): error (0.5, 0) -> mse 0.25
    assert torch.allclose(loss.x_hat, torch.tensor([[0.5, 2.0]])) and math.isclose(loss.mse.item(), 0.25)
    # AuxK on a batch of two with latent 2 dead (k_aux = min(d/2, 1) = 1):
    # row (1,2): residual (0.5,0), pre_2 = -1.5 -> no recon, error 0.25
    # row (3,1): x_c (2.5,1), top-1 latent 0 -> x_hat (3,0), residual (0,1); pre_2 = 1.5 -> recon (0.9,1.2),
    #            error 0.85;  residual variance 0.3125 -> aux = mean(0.25, 0.85) / 0.3125 = 1.76
    two = torch.tensor([[1.0, 2.0], [3.0, 1.0]])
    aux = sae.training_loss(two, 1.0, torch.tensor([False, False, True])).aux
    assert aux.item() == pytest.approx(1.76, rel=1e-5)


def test_batchtopk_keeps_k_times_batch_and_uses_threshold_at_inference():
    sae = _set(_tiny("batchtopk", k=1), W_enc=W_ENC, b_enc=[0.0, 0.0, 0.0])
    xs = torch.tensor([[1.0, 2.0], [3.0, 0.0]])  # x - b_dec: (0.5,2) -> pre (0.5,2,-1.5); (2.5,0) -> (2.5,0,2.5)
    loss = sae.training_loss(xs, 1.0, None)
    assert loss.l0 == 1.0  # two kept across the batch of two: 2.5 (row 1) twice, or 2.5 and 2.5
    sae.on_step_end(0, loss)
    assert float(sae.threshold) == 2.5  # the smallest kept activation
    assert torch.allclose(sae.encode(xs), torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))


def test_batchtopk_threshold_is_an_ema_whose_window_scales_with_the_steps():
    """Rate min(1, 1 / (w t)) at 1-based step t: with w = 0.5 the first two steps copy the batch threshold,
    the third moves it 2/3 of the way."""
    sae = build_sae(SAEConfig("batchtopk", 4, 8, k=1, threshold_window=0.5))
    for step, kept in enumerate([4.0, 2.0, 5.0]):
        sae._min_kept = kept
        sae.on_step_end(step, None)
    assert float(sae.threshold) == pytest.approx(2.0 + (5.0 - 2.0) * 2 / 3)
    with pytest.raises(SAEConfigError, match="threshold_window"):
        build_sae(SAEConfig("batchtopk", 4, 8, k=1, threshold_window=0.0))


def test_batchtopk_inference_l0_is_close_to_k_after_a_short_run(tmp_path):
    """A 150-step run with the default schedule-relative threshold: the inference L0 on the training
    distribution is within 15% of k. (The fixed EMA it replaced, beta 0.999 from step 15, gave 0.41 k here.)"""
    reader, x, _ = sparse_directions_data(tmp_path / "data", n=8000)
    torch.manual_seed(0)
    sae = build_sae(SAEConfig("batchtopk", 32, 128, k=4))
    cfg = TrainConfig(steps=150, batch_size=256, lr=1e-3, lr_warmup_steps=15, sparsity_warmup_steps=35)
    train_sae(sae, reader, cfg, log=lambda _: None)
    with torch.no_grad():
        l0 = (sae.encode(x[:4000]) > 0).sum(-1).float().mean().item()
    assert l0 == pytest.approx(4, rel=0.15)


def test_sae_config_of_an_older_checkpoint_loads_without_its_retired_keys():
    old = {"architecture": "batchtopk", "d_in": 4, "d_sae": 8, "k": 2, "threshold_ema_beta": 0.999,
           "threshold_ema_start": 80}
    cfg = SAEConfig(**old)
    assert cfg == SAEConfig("batchtopk", 4, 8, k=2)
    assert "threshold_ema_start" not in cfg.to_dict() and "threshold_window" in cfg.to_dict()


def test_batchtopk_active_set_is_exactly_the_batch_top_k_times_b():
    """Every way to the set gives the exact k * B largest, in CSR order: from the last batch's threshold (a
    guess low enough, or too high, so it falls back), from every row's top 4k, and from the whole batch when one
    row holds more than 4k of them."""
    sae = build_sae(SAEConfig("batchtopk", 16, 64, k=3))
    gen = torch.Generator().manual_seed(0)
    for trial in range(12):
        pre = torch.randn(32, 64, generator=gen) * torch.rand(32, 1, generator=gen) * 5
        if trial % 3 == 0:
            pre[0] += 10  # one row holds more than 4k of the batch's top values: the whole-batch path
        acts = torch.relu(pre).flatten()
        top = acts.topk(3 * 32)
        for guess in (None, 0.5 * top.values[-1].item(), 2 * top.values[0].item()):
            sae._min_kept = guess
            active = sae.active_set(pre)
            keys = active.rows * 64 + active.cols
            assert set(keys.tolist()) == set(top.indices[top.values > 0].tolist()), (trial, guess)
            assert bool((keys[1:] > keys[:-1]).all())  # CSR order
            assert sae._min_kept == top.values[-1].item()


def test_jumprelu_reference_forward_and_threshold_gradient():
    sae = _set(_tiny("jumprelu", target_l0=1.0, sparsity_coefficient=1.0, jumprelu_bandwidth=2.0),
               W_enc=W_ENC, b_enc=[0.0, 0.0, 0.0], log_threshold=[math.log(1.0)] * 3)
    # pre = (0.5, 2, -1.5), theta = 1 -> f = (0, 2, 0); L0 = 1 -> sparsity loss 0
    assert torch.allclose(sae.encode(X), torch.tensor([[0.0, 2.0, 0.0]]))
    loss = sae.training_loss(X, 1.0, None)
    assert loss.sparsity.item() == 0.0
    loss.mse.backward()
    # only latent 0 sits inside the rectangle (|0.5 - 1| / 2 < 1/2): d mse / d f_0 = -2 (x - x_hat) . d_0 = -1,
    # so d/d theta_0 = -(theta / eps) * 1 * (-1) = 0.5, and d/d log theta_0 = theta * 0.5 = 0.5
    grad = sae.log_threshold.grad
    assert grad[0].item() == pytest.approx(0.5) and grad[1] == 0 and grad[2] == 0


def test_gated_reference_forward_and_aux_loss():
    sae = _set(_tiny("gated", sparsity_coefficient=0.1), W_enc=W_ENC, b_gate=[0.0, -3.0, 0.0],
               b_mag=[0.0, 0.0, 0.0], r_mag=[0.0, math.log(2.0), 0.0])
    # proj = (0.5, 2, -1.5); gate = (0.5, -1, -1.5) -> only latent 0 open; mag = (0.5, 4, -1.5)
    assert torch.allclose(sae.encode(X), torch.tensor([[0.5, 0.0, 0.0]]))
    loss = sae.training_loss(X, 1.0, None)
    # x_hat = (0.5,0) + b_dec = (1, 0): mse 4; gate L1 = 0.5; aux uses ReLU(gate) = same codes -> 4
    assert math.isclose(loss.mse.item(), 4.0) and math.isclose(loss.aux.item(), 4.0)
    assert math.isclose(loss.total.item(), 4.0 + 0.1 * 0.5 + 4.0, rel_tol=1e-6)


def test_tied_reference_forward():
    sae = _set(build_sae(SAEConfig("tied", D, F, sparsity_coefficient=0.1)),
               W_dec=[[2.0, 0.0], [0.0, 1.0], [0.6, 0.8]], b_enc=[0.0, 0.0, -3.0])
    # decoder rows normalised: (1,0), (0,1), (0.6,0.8); pre = (1, 2, 2.2 - 3) -> f = (1, 2, 0); x_hat = x
    assert torch.allclose(sae.encode(X), torch.tensor([[1.0, 2.0, 0.0]]))
    assert torch.allclose(sae(X), X)


SPARSE_PATH_CONFIGS = {
    "relu": dict(sparsity_coefficient=0.05),
    "jumprelu": dict(target_l0=4, sparsity_coefficient=1.0, jumprelu_bandwidth=0.05),
    "gated": dict(sparsity_coefficient=0.05),
}


def _with_density(sae, x: torch.Tensor, density: float):
    """Thresholds moved so each latent is active on about ``density`` of the rows of ``x`` (decoder norms and
    gate magnitudes jittered, so no gradient is trivially uniform)."""
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(sae.cfg.d_sae, 1) + 0.5)
        sae.set_firing_cut(((x - sae.b_dec) @ sae.W_enc).quantile(1 - density, dim=0))
        if sae.architecture == "gated":
            sae.r_mag.copy_(0.3 * torch.randn(sae.cfg.d_sae))
            sae.b_mag.copy_(0.1 * torch.randn(sae.cfg.d_sae))
    return sae


def _float_close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to float32 summation order: within 1e-5 of the larger tensor's largest magnitude."""
    return bool((a - b).abs().max() <= 1e-5 * max(a.abs().max(), b.abs().max()))


def _loss_and_grads(sae, x, sparse_below: float):
    sae.sparse_below = sparse_below
    sae.zero_grad()
    loss = sae.training_loss(x, 0.7, None)
    loss.total.backward()
    grads = {name: p.grad.clone() for name, p in sae.named_parameters()}
    return loss, grads


@pytest.mark.parametrize("arch", sorted(SPARSE_PATH_CONFIGS))
@pytest.mark.parametrize("density", [0.01, 0.04, 0.3])
def test_the_sparse_path_has_the_dense_paths_loss_and_gradients(arch, density):
    """The penalised architectures train on their active pairs once few are active: same loss terms, codes'
    reconstruction, dead-latent signal and gradients of every parameter as the dense path, to float tolerance."""
    torch.manual_seed(3)
    x = torch.randn(96, 16) @ torch.randn(16, 16) + 0.5
    sae = _with_density(build_sae(SAEConfig(arch, 16, 256, **SPARSE_PATH_CONFIGS[arch])), x, density)
    dense, dense_grads = _loss_and_grads(sae, x, sparse_below=0.0)
    sparse, sparse_grads = _loss_and_grads(sae, x, sparse_below=1.0)
    assert not dense.sparse and sparse.sparse
    for term in ("total", "mse", "sparsity", "aux", "x_hat"):
        assert _float_close(getattr(sparse, term), getattr(dense, term)), term
    assert sparse.l0 == pytest.approx(dense.l0) and torch.equal(sparse.fired, dense.fired)
    for name, grad in dense_grads.items():
        assert grad.abs().max() > 0, f"{name}: no gradient to compare"
        assert _float_close(sparse_grads[name], grad), name
    # the default switch takes the sparse path at low measured density only
    sae.sparse_below = type(sae).sparse_below
    assert sae.training_loss(x, 0.7, None).sparse == (density < sae.sparse_below)


def _dense_topk_total(sae, x: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
    """TopK's (or BatchTopK's) loss (MSE + AuxK / 32) written densely: codes and AuxK codes as [batch, d_sae]
    tensors, the kept set from each row's top k (or the batch's top k * B)."""
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    acts = torch.relu(pre)
    if sae.architecture == "topk":
        kept = torch.zeros_like(acts, dtype=torch.bool).scatter(-1, acts.topk(sae.cfg.k, dim=-1).indices, True)
    else:
        flat = torch.zeros(acts.numel(), dtype=torch.bool).scatter(0, acts.flatten().topk(sae.cfg.k * len(x)).indices,
                                                                     True)
        kept = flat.view_as(acts)
    codes = acts * kept
    x_hat = codes @ sae.W_dec + sae.b_dec
    mse = (x - x_hat).pow(2).sum(-1).mean()
    k_aux = min(sae.cfg.d_in // 2, int(dead.sum()))
    aux_idx = torch.where(dead, pre, -torch.inf).topk(k_aux, dim=-1).indices
    aux_codes = torch.zeros_like(pre).scatter(-1, aux_idx, acts.gather(-1, aux_idx))
    residual = (x - x_hat).detach()
    variance = (residual - residual.mean(0)).pow(2).sum(-1).mean()
    return mse + (residual - aux_codes @ sae.W_dec).pow(2).sum(-1).mean() / variance / 32


@pytest.mark.parametrize(("arch", "last_kept"), [("topk", None), ("batchtopk", None), ("batchtopk", "previous")])
def test_topk_training_on_its_pairs_has_the_dense_loss_and_gradients(arch, last_kept):
    """TopK's stacked sparse path (k active latents plus AuxK's dead ones, through one set of sparse products;
    BatchTopK's, choosing its pairs afresh or from the last batch's threshold) against the same loss written
    with dense codes: loss and every gradient to float tolerance."""
    torch.manual_seed(4)
    sae = build_sae(SAEConfig(arch, 16, 256, k=6))
    with torch.no_grad():
        sae.b_dec.copy_(0.1 * torch.randn(16))
        sae.b_enc.copy_(0.05 * torch.randn(256))
    x = torch.randn(64, 16) @ torch.randn(16, 16)
    dead = torch.rand(256) < 0.3
    if last_kept:
        sae.training_loss(x[:32], 1.0, dead)  # sets the threshold the next selection starts from
        assert sae._min_kept is not None
    ours = sae.training_loss(x, 1.0, dead)
    ours.total.backward()
    sparse_grads = {name: p.grad.clone() for name, p in sae.named_parameters()}
    sae.zero_grad()
    dense = _dense_topk_total(sae, x, dead)
    dense.backward()
    assert _float_close(ours.total, dense)
    for name, p in sae.named_parameters():
        assert p.grad.abs().max() > 0 and _float_close(sparse_grads[name], p.grad), name


@pytest.mark.parametrize("arch", ["topk", "batchtopk", *sorted(SPARSE_PATH_CONFIGS)])
def test_the_sparse_path_trains_under_bf16_autocast(arch):
    """The sparse kernels have no bf16 version: under autocast (as on a GPU) they run in float32, and the
    gradients stay close to a float32 step's."""
    torch.manual_seed(5)
    x = torch.randn(96, 16) @ torch.randn(16, 16)
    config = dict(k=6) if "topk" in arch else SPARSE_PATH_CONFIGS[arch]
    sae = build_sae(SAEConfig(arch, 16, 256, **config))
    if "topk" not in arch:
        _with_density(sae, x, 0.03)
    sae.sparse_below = 1.0
    dead = torch.rand(256) < 0.3  # AuxK too, for TopK
    grads = {}
    for precision in ("float32", "bf16"):
        sae.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = sae.training_loss(x, 0.7, dead)
        loss.total.backward()
        assert loss.sparse and torch.isfinite(loss.total)
        grads[precision] = {name: p.grad.clone() for name, p in sae.named_parameters()}
    for name in ("W_enc", "W_dec"):
        bf16, full = grads["bf16"][name], grads["float32"][name]
        assert bf16.dtype == torch.float32
        assert torch.nn.functional.cosine_similarity(bf16.flatten(), full.flatten(), dim=0) > 0.9, name


ARCH_CONFIGS = {
    "relu": dict(sparsity_coefficient=0.05),
    "topk": dict(k=4),
    "batchtopk": dict(k=4),
    "jumprelu": dict(target_l0=4, sparsity_coefficient=1.0, jumprelu_init_threshold=0.05, jumprelu_bandwidth=0.05),
    "gated": dict(sparsity_coefficient=0.05),
    "tied": dict(sparsity_coefficient=0.05),
}
RECOVERY_BAR = 0.85  # mean over true directions of the best decoder cosine similarity


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return sparse_directions_data(tmp_path_factory.mktemp("synthetic"))


@pytest.mark.parametrize("arch", sorted(ARCH_CONFIGS))
def test_training_recovers_known_sparse_directions(synthetic, arch):
    reader, x, dirs = synthetic
    torch.manual_seed(0)
    sae = build_sae(SAEConfig(arch, 32, 128, **ARCH_CONFIGS[arch]))
    cfg = TrainConfig(steps=1200, batch_size=256, lr=1e-3, lr_warmup_steps=50, sparsity_warmup_steps=200)
    train_sae(sae, reader, cfg, log=lambda _: None)
    with torch.no_grad():
        recovered = (dirs @ sae.decoder_directions().T).max(1).values.mean().item()
        x_hat = sae(x[:4000])
    explained = 1 - ((x[:4000] - x_hat).var(0).sum() / x[:4000].var(0).sum()).item()
    assert recovered > RECOVERY_BAR, f"{arch}: mean max cosine {recovered:.3f}"
    assert explained > 0.8, f"{arch}: explained variance {explained:.3f}"


@pytest.mark.parametrize("arch", ["relu", "topk", "batchtopk", "jumprelu", "gated", "tied", "pca", "ica",
                                  "neuron", "random"])
def test_checkpoint_loads_in_sae_lens_with_matching_codes(tmp_path, arch):
    sae_lens = pytest.importorskip("sae_lens")
    torch.manual_seed(1)
    baseline = arch in ("pca", "ica", "neuron", "random")
    sae = build_sae(SAEConfig(arch, 8, 16 if baseline else 32, **ARCH_CONFIGS.get(arch, {})))
    with torch.no_grad():
        if baseline:
            sae.fit(torch.randn(400, 8) @ torch.randn(8, 8))
        else:
            for p in sae.parameters():
                p.add_(0.1 * torch.randn_like(p))
        if arch == "batchtopk":
            sae.threshold.fill_(0.3)
    save_sae(sae, tmp_path)
    theirs = sae_lens.SAE.load_from_disk(tmp_path)
    x = torch.randn(64, 8)
    with torch.no_grad():
        ours, codes = sae.encode(x), theirs.encode(x)
        assert torch.allclose(ours, codes, atol=1e-5)
        assert (ours > 0).any()
        assert torch.allclose(sae(x), theirs.decode(codes), atol=1e-5)
        assert torch.equal(load_sae(tmp_path).encode(x), ours)
    # the weights are stored once: the state file keeps only what the SAELens file lacks
    extra = load_file(tmp_path / "sae_state.safetensors")
    assert not {"W_enc", "W_dec"} & set(extra) or arch == "tied"


def test_external_sae_lens_directory_is_imported(tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    theirs = sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(d_in=8, d_sae=16))
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.2 * torch.rand_like(p))
    theirs.save_model(tmp_path)
    ours = load_sae(tmp_path)
    x = torch.randn(32, 8)
    with torch.no_grad():
        assert torch.allclose(ours.encode(x), theirs.encode(x), atol=1e-5)


@pytest.mark.parametrize("arch", ["jumprelu", "topk", "gated"])
def test_gemma_scope_flags_are_honoured_on_import(tmp_path, arch):
    """Gemma Scope's SAEs set apply_b_dec_to_input: false; our codes must still equal sae_lens's."""
    sae_lens = pytest.importorskip("sae_lens")
    configs = {"jumprelu": (sae_lens.JumpReLUSAE, sae_lens.JumpReLUSAEConfig, {}),
               "topk": (sae_lens.TopKSAE, sae_lens.TopKSAEConfig, {"k": 4}),
               "gated": (sae_lens.GatedSAE, sae_lens.GatedSAEConfig, {})}
    cls, cfg_cls, extra = configs[arch]
    torch.manual_seed(2)
    theirs = cls(cfg_cls(d_in=8, d_sae=16, apply_b_dec_to_input=False, normalize_activations="none", **extra))
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.3 * torch.randn_like(p))
    theirs.save_model(tmp_path)
    assert json.loads((tmp_path / "cfg.json").read_text())["apply_b_dec_to_input"] is False
    x = torch.randn(64, 8) + 2.0
    with torch.no_grad():
        codes = theirs.encode(x)
        assert (codes > 0).any()
        assert torch.allclose(load_sae(tmp_path).encode(x), codes, atol=1e-5)


@pytest.mark.parametrize(("flag", "value"), [("normalize_activations", "layer_norm"),
                                           ("normalize_activations", "constant_norm_rescale"),
                                           ("rescale_acts_by_decoder_norm", True)])
def test_unsupported_sae_lens_flags_are_one_clear_error(tmp_path, flag, value):
    """Flags whose effect is not in the weights would give wrong codes: refused, naming the flag."""
    sae_lens = pytest.importorskip("sae_lens")
    sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=8, d_sae=16, k=4)).save_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps(cfg | {flag: value}))
    with pytest.raises(SAECheckpointError, match=f"cfg.json: {flag} {value!r} is not supported"):
        load_sae(tmp_path)


def _sae_lens_saved(arch: str, directory, **cfg):
    """A SAELens SAE of ``arch`` with every parameter moved off its initial value, saved to ``directory``."""
    sae_lens = pytest.importorskip("sae_lens")
    classes = {"standard": (sae_lens.StandardSAE, sae_lens.StandardSAEConfig, {}),
               "topk": (sae_lens.TopKSAE, sae_lens.TopKSAEConfig, {"k": 4}),
               "jumprelu": (sae_lens.JumpReLUSAE, sae_lens.JumpReLUSAEConfig, {}),
               "gated": (sae_lens.GatedSAE, sae_lens.GatedSAEConfig, {})}
    cls, cfg_cls, extra = classes[arch]
    torch.manual_seed(6)
    theirs = cls(cfg_cls(d_in=8, d_sae=16, **extra, **cfg))
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(0.3 * torch.randn_like(p).abs() if p.dim() == 1 else 0.3 * torch.randn_like(p))
    theirs.save_model(directory)
    return theirs


@pytest.mark.parametrize(("arch", "b_dec_to_input"), [("standard", True), ("topk", True), ("jumprelu", False),
                                                      ("gated", True)])
def test_sae_lens_activation_norm_factor_is_folded(tmp_path, arch, b_dec_to_input):
    """normalize_activations expected_average_only_in: trained on x * s. With s from activation_scaler.json (or
    given), our codes of x are SAELens's of x * s, and our reconstructions its reconstruction divided by s, as
    SAELens's own fold gives them."""
    theirs = _sae_lens_saved(arch, tmp_path, normalize_activations="expected_average_only_in",
                             apply_b_dec_to_input=b_dec_to_input)
    (tmp_path / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 2.5, "has_whitening": False}))
    x = torch.randn(64, 8)
    ours = load_sae(tmp_path)
    with torch.no_grad():
        codes = ours.encode(x)
        assert (codes > 0).any()
        assert torch.allclose(codes, theirs.encode(x * 2.5), atol=1e-5)
        assert torch.allclose(ours(x), theirs.decode(theirs.encode(x * 2.5)) / 2.5, atol=1e-5)
        theirs.fold_activation_norm_scaling_factor(2.5)
        assert torch.allclose(codes, theirs.encode(x), atol=1e-5)
        (tmp_path / "activation_scaler.json").unlink()
        assert torch.equal(load_sae(tmp_path, norm_scaling_factor=2.5).encode(x), codes)
    with pytest.raises(SAECheckpointError, match="needs its factor: no activation_scaler.json beside it"):
        load_sae(tmp_path)


def test_pre_6_sae_lens_config_reads_as_sae_lens_reads_it(tmp_path):
    """A SAELens 5 TopK config (activation_fn_str topk, its k in activation_fn_kwargs, no architecture, a bool
    normalize_activations): read as TopK, not as the ReLU SAE its missing architecture would default to."""
    sae_lens = pytest.importorskip("sae_lens")
    _sae_lens_saved("topk", tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    dropped = ("architecture", "k", "metadata", "rescale_acts_by_decoder_norm")
    legacy = {k: v for k, v in cfg.items() if k not in dropped}
    legacy |= {"activation_fn_str": "topk", "activation_fn_kwargs": {"k": 4}, "normalize_activations": False,
               "hook_point": "blocks.3.hook_resid_post", "sae_lens_training_version": "5.9.1"}
    (tmp_path / "cfg.json").write_text(json.dumps(legacy))
    x = torch.randn(64, 8)
    with torch.no_grad():
        codes = load_sae(tmp_path).encode(x)
        assert (codes > 0).sum(-1).eq(4).all()
        assert torch.allclose(codes, sae_lens.SAE.load_from_disk(tmp_path).encode(x), atol=1e-5)


def test_legacy_sae_lens_scaling_factor_is_folded_into_the_decoder(tmp_path):
    """SAELens before 6.0 decoded (codes * scaling_factor) @ W_dec + b_dec when finetuning_scaling_factor was set."""
    from safetensors.torch import save_file

    theirs = _sae_lens_saved("standard", tmp_path)
    weights = load_file(tmp_path / "sae_weights.safetensors")
    scale = torch.linspace(0.5, 2.0, 16)
    save_file({**weights, "scaling_factor": scale}, tmp_path / "sae_weights.safetensors")
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps(cfg | {"finetuning_scaling_factor": True}))
    x = torch.randn(64, 8)
    with torch.no_grad():
        codes = theirs.encode(x)
        ours = load_sae(tmp_path)
        assert torch.allclose(ours.encode(x), codes, atol=1e-5)
        assert torch.allclose(ours(x), (codes * scale) @ theirs.W_dec + theirs.b_dec, atol=1e-5)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(SAECheckpointError, match="finetuning_scaling_factor is not true"):
        load_sae(tmp_path)


def _gemma_scope_folder(root, d_in: int = 8, d_sae: int = 16, **replace):
    """A Gemma Scope-style ``layer_3/width_<d_sae>/average_l0_5/params.npz`` with random arrays (float32)."""
    rng = np.random.default_rng(3)
    folder = root / "layer_3" / f"width_{d_sae}" / "average_l0_5"
    folder.mkdir(parents=True)
    arrays = {"W_enc": rng.normal(size=(d_in, d_sae)), "W_dec": rng.normal(size=(d_sae, d_in)),
              "b_enc": 0.1 * rng.normal(size=d_sae), "b_dec": rng.normal(size=d_in),
              "threshold": rng.uniform(0.5, 1.5, d_sae)} | replace
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items() if v is not None}
    np.savez(folder / "params.npz", **arrays)
    return folder, arrays


def test_gemma_scope_params_folder_gives_its_codes(tmp_path, monkeypatch):
    """Gemma Scope's params.npz: the codes and reconstructions of its own formula (the encoder reads x, no b_dec
    subtracted) and of SAELens's loader of the same file."""
    folder, a = _gemma_scope_folder(tmp_path)
    x = np.random.default_rng(4).normal(size=(64, 8)).astype(np.float32) + 1.0
    pre = x @ a["W_enc"] + a["b_enc"]
    codes = pre * (pre > a["threshold"])
    ours = load_sae(folder)
    with torch.no_grad():
        got = ours.encode(torch.from_numpy(x))
        assert (got > 0).any() and (got == 0).any()
        np.testing.assert_allclose(got.numpy(), codes, atol=1e-5)
        np.testing.assert_allclose(ours.decode(got).numpy(), codes @ a["W_dec"] + a["b_dec"], atol=1e-4)
    assert {k: ours.cfg.metadata[k] for k in ("format", "layer", "width", "average_l0")} == {
        "format": "gemma-scope", "layer": 3, "width": 16, "average_l0": 5}
    sae_lens = pytest.importorskip("sae_lens")
    from sae_lens.loading import pretrained_sae_loaders as loaders

    monkeypatch.setattr(loaders, "hf_hub_download", lambda **_: str(folder / "params.npz"))
    cfg, state, _ = loaders.gemma_2_sae_huggingface_loader(
        "google/gemma-scope-2b-pt-res", "layer_3/width_16k/average_l0_5", cfg_overrides={"d_in": 8, "d_sae": 16})
    theirs = sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(
        d_in=8, d_sae=16, apply_b_dec_to_input=cfg["apply_b_dec_to_input"], normalize_activations="none"))
    theirs.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(got, theirs.encode(torch.from_numpy(x)), atol=1e-5)


@pytest.mark.parametrize(("replace", "message"), [
    ({"threshold": None}, "params.npz: no array threshold"),
    ({"scaling_factor": np.full(16, 2.0)}, "params.npz: a scaling_factor other than 1 is not supported"),
    ({"W_enc": np.zeros((8, 12)), "W_dec": np.zeros((12, 8))}, "the folder says width 16 but W_enc has 12 latents"),
])
def test_bad_gemma_scope_folder_is_one_clear_error(tmp_path, replace, message):
    folder, _ = _gemma_scope_folder(tmp_path, **replace)
    with pytest.raises(SAECheckpointError, match=message):
        load_sae(folder)


def test_gemma_scope_unit_scaling_factor_is_accepted(tmp_path):
    folder, a = _gemma_scope_folder(tmp_path, scaling_factor=np.ones(16))
    assert torch.equal(load_sae(folder).W_dec.detach(), torch.from_numpy(a["W_dec"]))


def _sparsify_folder(root, **cfg):
    sparsify = pytest.importorskip("sparsify")
    torch.manual_seed(5)
    coder = sparsify.SparseCoder(8, sparsify.SparseCoderConfig(num_latents=32, k=4, **cfg))
    with torch.no_grad():
        for p in coder.parameters():
            p.add_(0.3 * torch.randn_like(p))
    folder = root / "layers.3"
    coder.save_to_disk(folder)
    return folder, coder


def test_sparsify_folder_gives_its_codes(tmp_path):
    """sparsify's TopK SAE: its encoder is an nn.Linear ([d_sae, d_in]) reading x - b_dec; our codes and
    reconstructions equal the library's own."""
    folder, coder = _sparsify_folder(tmp_path)
    ours = load_sae(folder)
    x = torch.randn(64, 8) + 1.0
    with torch.no_grad():
        top_acts, top_indices, _ = coder.encode(x)
        theirs = torch.zeros(64, 32).scatter_(-1, top_indices, top_acts)
        codes = ours.encode(x)
        assert (codes > 0).sum(-1).eq(4).all()
        assert torch.allclose(codes, theirs, atol=1e-5)
        assert torch.allclose(ours(x), coder(x).sae_out, atol=1e-5)
    assert ours.cfg.metadata["format"] == "sparsify" and ours.cfg.metadata["hookpoint"] == "layers.3"


@pytest.mark.parametrize(("cfg", "message"), [
    ({"transcode": True}, "transcode true is not supported"),
    ({"skip_connection": True}, "skip_connection true is not supported"),
    ({"activation": "groupmax"}, "activation 'groupmax' is not supported"),
    ({"added_later": True}, r"fields \['added_later'\] are not known"),
])
def test_unsupported_sparsify_fields_are_one_clear_error(tmp_path, cfg, message):
    extra = cfg.pop("added_later", None)
    folder, _ = _sparsify_folder(tmp_path, **cfg)
    if extra is not None:
        raw = json.loads((folder / "cfg.json").read_text())
        (folder / "cfg.json").write_text(json.dumps(raw | {"added_later": extra}))
    with pytest.raises(SAECheckpointError, match=message):
        load_sae(folder)


DICTIONARY_LEARNING = Path(__file__).parent.parent / "fixtures" / "dictionary_learning"


@pytest.mark.parametrize("dict_class", ["AutoEncoder", "AutoEncoderNew", "GatedAutoEncoder", "JumpReluAutoEncoder",
                                        "AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE"])
def test_dictionary_learning_trainer_folder_gives_its_codes(dict_class):
    """Every dict_class dictionary_learning ships: our codes and reconstructions equal the library's own, recorded
    by tests/fixtures/dictionary_learning/make_fixtures.py (the library does not install beside our pins)."""
    folder = DICTIONARY_LEARNING / dict_class
    expected = load_file(folder / "expected.safetensors")
    ours = load_sae(folder)
    with torch.no_grad():
        codes = ours.encode(expected["x"])
        assert (expected["codes"] > 0).any() and (expected["codes"] == 0).any()
        assert torch.allclose(codes, expected["codes"], atol=1e-5)
        assert torch.allclose(ours.decode(codes), expected["x_hat"], atol=1e-5)
    assert ours.cfg.metadata["dict_class"] == dict_class and ours.cfg.metadata["layer"] == 3


def test_dictionary_learning_mid_run_backup_is_refused_as_such():
    with pytest.raises(SAECheckpointError, match=r"ae.pt: a mid-run backup \(step 100\), not a finished SAE"):
        load_sae(DICTIONARY_LEARNING / "backup")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda cfg: cfg["trainer"].update(dict_class="IdentityDict"), "dict_class 'IdentityDict' is not supported"),
    (lambda cfg: cfg["trainer"].update(dict_size=32), r"activation_dim and dict_size \(8, 32\) do not match"),
    (lambda cfg: cfg.pop("trainer"), "no trainer.dict_class"),
])
def test_bad_dictionary_learning_folder_is_one_clear_error(tmp_path, edit, message):
    import shutil

    folder = tmp_path / "trainer_0"
    shutil.copytree(DICTIONARY_LEARNING / "AutoEncoderTopK", folder)
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SAECheckpointError, match=message):
        load_sae(folder)


def test_dictionary_learning_pickled_objects_are_refused(tmp_path):
    """ae.pt is read with weights_only=True: a pickle holding arbitrary Python objects is refused, never run."""
    import shutil

    folder = tmp_path / "trainer_0"
    shutil.copytree(DICTIONARY_LEARNING / "AutoEncoderTopK", folder)
    torch.save({"W": torch.zeros(2), "hook": print}, folder / "ae.pt")
    with pytest.raises(SAECheckpointError, match="not loadable as tensors with weights_only=True"):
        load_sae(folder)


def test_impossible_configs_fail_before_compute():
    from sae_models.sae.gated import GatedSAE

    with pytest.raises(SAEConfigError, match="^config architecture 'relu' given to GatedSAE$"):
        GatedSAE.validate(SAEConfig("relu", 8, 16, sparsity_coefficient=0.1))
    with pytest.raises(SAEConfigError, match="k must be in 1..d_sae"):
        build_sae(SAEConfig("topk", 8, 16, k=32))
    with pytest.raises(SAEConfigError, match="target_l0"):
        build_sae(SAEConfig("jumprelu", 8, 16, sparsity_coefficient=1.0))
    with pytest.raises(SAEConfigError, match="d_sae .* must be >= 1"):
        build_sae(SAEConfig("relu", 8, 0, sparsity_coefficient=0.1))
    with pytest.raises(SAEConfigError, match="gated: sparsity_coefficient must be > 0"):
        build_sae(SAEConfig("gated", 8, 16))
    with pytest.raises(SAEConfigError, match="architecture 'vanilla'"):
        build_sae(SAEConfig("vanilla", 8, 16))


def _write_acts(path, acts):
    import numpy as np

    from sae_models.activation_store import ActivationReader, write_shards
    from sae_models.lm.extract import ActivationBatch

    ids = np.arange(len(acts))
    write_shards([ActivationBatch(ids, ids.astype(np.int32), ids.astype(np.int32), acts)], path, acts.shape[1],
                 "float32", row_group_mb=0.05)
    return ActivationReader(path)


def test_nan_activations_stop_training_without_touching_the_checkpoint(tmp_path):
    import numpy as np

    clean = np.random.default_rng(0).standard_normal((4096, 8)).astype(np.float32)
    poisoned = clean.copy()
    poisoned[::7] = np.nan
    sae = build_sae(SAEConfig("topk", 8, 16, k=2))
    cfg = TrainConfig(steps=100, normalize_activations=False, batch_size=256, checkpoint_every=2, log_every=1,
                      progress_s=0)

    class Crash(Exception):
        pass

    def crash_at_step_5(line: str) -> None:
        if " step 5/" in line:
            raise Crash

    with pytest.raises(Crash):  # a clean run dies after its step-4 checkpoint
        train_sae(sae, _write_acts(tmp_path / "clean", clean), cfg, tmp_path / "ckpt", log=crash_at_step_5)
    before = load_file(tmp_path / "ckpt" / "checkpoint.safetensors")
    with pytest.raises(TrainingError, match=r"step 4: the activation batch contains NaN or Inf"):
        train_sae(build_sae(SAEConfig("topk", 8, 16, k=2)), _write_acts(tmp_path / "poisoned", poisoned), cfg,
                  tmp_path / "ckpt", log=lambda _: None)
    after = load_file(tmp_path / "ckpt" / "checkpoint.safetensors")
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())


def test_truncated_and_mismatched_checkpoints_are_clear_errors(tmp_path):
    sae = build_sae(SAEConfig("topk", 8, 16, k=2))
    save_sae(sae, tmp_path / "a")
    weights = tmp_path / "a" / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(SAECheckpointError, match="sae_weights.safetensors: unreadable or truncated"):
        load_sae(tmp_path / "a")
    save_sae(sae, tmp_path / "b")
    cfg = (tmp_path / "b" / "cfg.json").read_text().replace('"d_sae": 16', '"d_sae": 32')
    (tmp_path / "b" / "cfg.json").write_text(cfg)
    with pytest.raises(SAECheckpointError, match="weights do not match cfg.json"):
        load_sae(tmp_path / "b")
    with pytest.raises(SAECheckpointError, match="cfg.json: missing"):
        load_sae(tmp_path / "nowhere")


RESUME_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    from pathlib import Path
    from safetensors.torch import save_file
    from sae_models.activation_store import ActivationReader
    from sae_models.sae import SAEConfig, build_sae
    from sae_models.sae.train import TrainConfig, train_sae
    data, ckpt, out, kill_at = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    sae = build_sae(SAEConfig("batchtopk", 32, 64, k=4, dead_tokens=2000))

    def log(message):
        print(message, flush=True)
        if kill_at and f" step {kill_at}/" in message:
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = TrainConfig(steps=120, batch_size=128, lr=1e-3, lr_warmup_steps=10, sparsity_warmup_steps=20,
                      checkpoint_every=10, log_every=1, progress_s=0)
    train_sae(sae, ActivationReader(data), cfg, None if ckpt == "-" else Path(ckpt), log=log)
    save_file({k: v.contiguous() for k, v in sae.state_dict().items()}, out)
""")


def test_sigkill_midway_then_resume_equals_an_uninterrupted_run(tmp_path):
    """SIGKILL at step 65 (its last checkpoint is step 60's), then a rerun: it must resume at step 60, not start
    afresh (a fresh run would end identical too, from its seed), and end bit-identical to an unbroken run."""
    sparse_directions_data(tmp_path / "data", n=8000)
    script = tmp_path / "train.py"
    script.write_text(RESUME_SCRIPT)
    run = [sys.executable, str(script), str(tmp_path / "data")]
    subprocess.run(run + ["-", str(tmp_path / "ref.safetensors"), "0"], check=True, capture_output=True)

    ckpt = tmp_path / "ckpt"
    killed = subprocess.run(run + [str(ckpt), str(tmp_path / "out.safetensors"), "65"], capture_output=True)
    assert killed.returncode == -9 and not (tmp_path / "out.safetensors").exists()
    resumed = subprocess.run(run + [str(ckpt), str(tmp_path / "out.safetensors"), "0"], check=True,
                             capture_output=True, text=True)
    assert resumed.stdout.splitlines()[0] == "resumed at step 60/120"
    ref, out = load_file(tmp_path / "ref.safetensors"), load_file(tmp_path / "out.safetensors")
    assert ref.keys() == out.keys()
    for key in ref:
        assert torch.equal(ref[key], out[key]), key


def test_a_checkpoint_of_another_schedule_is_not_resumed(tmp_path):
    reader, _, _ = sparse_directions_data(tmp_path / "data", n=4000)
    logs: list[str] = []
    short = TrainConfig(steps=6, batch_size=128, checkpoint_every=2)
    train_sae(build_sae(SAEConfig("topk", 32, 64, k=4)), reader, short, tmp_path / "ckpt", log=logs.append)
    longer = TrainConfig(steps=8, batch_size=128, checkpoint_every=2)
    train_sae(build_sae(SAEConfig("topk", 32, 64, k=4)), reader, longer, tmp_path / "ckpt", log=logs.append)
    assert any("starting afresh" in line for line in logs)
    assert not any(line.startswith("resumed") for line in logs)


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "jumprelu", "gated"])
def test_training_keeps_every_decoder_row_at_unit_norm_and_its_gradient_orthogonal_to_it(tmp_path, arch):
    """The decoder constraint has two halves: the gradient's component along each row is removed before the step,
    and the rows are renormalised after it (Adam's update is not orthogonal to them). Each is checked on its own:
    the gradient as the trainer leaves it, every step; the norms at the end."""
    reader, _, _ = sparse_directions_data(tmp_path / "data", n=2000)
    torch.manual_seed(0)
    sae = build_sae(SAEConfig(arch, 32, 128, k=4, sparsity_coefficient=0.01, target_l0=4))
    parallel = []
    remove = sae.remove_parallel_grads

    def remove_and_measure() -> None:
        remove()
        rows = sae.W_dec / sae.W_dec.norm(dim=-1, keepdim=True)
        parallel.append((sae.W_dec.grad * rows).sum(-1).abs().max().item())

    sae.remove_parallel_grads = remove_and_measure
    train_sae(sae, reader, TrainConfig(steps=12, batch_size=128, lr=1e-2, lr_warmup_steps=1,
                                       sparsity_warmup_steps=2), log=lambda _: None)
    assert len(parallel) == 12 and max(parallel) < 1e-5
    assert torch.allclose(sae.W_dec.norm(dim=-1), torch.ones(128), atol=1e-5)


def test_the_geometric_median_is_the_point_nearest_all_rows_in_sum_not_their_mean():
    from sae_models.sae.base import geometric_median

    line = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [100.0, 0.0]])  # on a line: the median
    assert torch.allclose(geometric_median(line), torch.tensor([2.0, 0.0]), atol=1e-3)
    from scipy.optimize import minimize

    points = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0], [1.0, 1.0], [9.0, 7.0]])  # mean (2.8, 2.2): far off
    best = minimize(lambda p: np.linalg.norm(points.numpy() - p, axis=1).sum(), x0=np.zeros(2), method="Nelder-Mead",
                    options={"xatol": 1e-8, "fatol": 1e-10}).x
    assert torch.allclose(geometric_median(points), torch.tensor(best, dtype=torch.float32), atol=1e-3)
    assert not torch.allclose(points.mean(0), torch.tensor(best, dtype=torch.float32), atol=0.5)


def test_an_architecture_without_thresholds_says_so_when_asked_to_set_one():
    sae = build_sae(SAEConfig("topk", d_in=4, d_sae=8, k=2))
    with pytest.raises(NotImplementedError, match="topk has no per-latent threshold"):
        sae.set_firing_cut(torch.zeros(8))


def test_decoder_directions_are_unit_rows_whatever_the_norms_an_architecture_leaves():
    sae = build_sae(SAEConfig("relu", 4, 8, sparsity_coefficient=0.1))  # ReLU SAEs' rows need not be unit
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.5, 2.0, 8)[:, None])
    directions = sae.decoder_directions()
    assert torch.allclose(directions.norm(dim=-1), torch.ones(8), atol=1e-6)
    assert torch.allclose(directions * sae.W_dec.norm(dim=-1, keepdim=True), sae.W_dec, atol=1e-6)


def test_an_active_pair_whose_code_is_zero_has_not_fired():
    from sae_models.sae.base import ActiveSet

    mask = torch.tensor([[True, False, True], [False, True, True]])
    active = ActiveSet.from_mask(mask)
    assert active.fired(torch.tensor([0.5, 0.0, 0.0, 0.0])).tolist() == [True, False, False]


def test_a_width_of_one_is_allowed_and_zero_is_one_clear_error():
    assert build_sae(SAEConfig("topk", d_in=1, d_sae=1, k=1)).W_dec.shape == (1, 1)
    with pytest.raises(SAEConfigError, match=r"topk: d_in \(0\) and d_sae \(4\) must be >= 1"):
        build_sae(SAEConfig("topk", d_in=0, d_sae=4, k=1))


def test_a_configured_norm_scaling_factor_changes_the_external_sae_fingerprint(tmp_path):
    """The factor changes the imported weights, so it is part of what the import's fingerprint reads; left unset,
    the fingerprint of an external SAE is what it was before the setting existed."""
    from sae_models.sae.config import SweepConfig
    from sae_models.sae.sweep import external_variant, variant_settings

    plain = variant_settings(external_variant("ext", "m", str(tmp_path)), SweepConfig())
    scaled = variant_settings(external_variant("ext", "m", str(tmp_path), 2.5), SweepConfig())
    assert set(plain) == {"path", "files", "holdout_fraction"} and scaled == plain | {"norm_scaling_factor": 2.5}


def test_sweep_width_sets_d_sae_and_enters_the_fingerprint_only_when_set():
    from sae_models.sae.config import SweepConfig
    from sae_models.sae.sweep import Variant, sae_config, variant_settings

    topk = Variant("topk-k8", "topk", 8)
    assert sae_config(topk, 64, SweepConfig(), {}).d_sae == 8 * 64
    assert sae_config(topk, 64, SweepConfig(width=100), {}).d_sae == 100
    assert "width" not in variant_settings(topk, SweepConfig())
    assert variant_settings(topk, SweepConfig(width=100))["width"] == 100


def test_gemma_scope_folder_widths_are_its_powers_of_two():
    from sae_models.sae.formats.gemma_scope import folder_facts

    assert folder_facts(Path("res/layer_12/width_131k/average_l0_82")) == {"layer": 12, "width": 131072,
                                                                           "average_l0": 82}
    assert [folder_facts(Path(f"width_{w}"))["width"] for w in ("16k", "65k", "1m")] == [16384, 65536, 1048576]


def test_a_bfloat16_sae_lens_directory_is_folded_in_float32(tmp_path):
    """The b_dec fold of an encoder that reads x itself, done in bfloat16, moves codes by more than the weights'
    own rounding: the tensors are cast first."""
    from safetensors.torch import save_file

    theirs = _sae_lens_saved("jumprelu", tmp_path, apply_b_dec_to_input=False)
    with torch.no_grad():
        theirs.b_dec.mul_(40.0)
    weights = {k: v.to(torch.bfloat16) for k, v in theirs.state_dict().items()}
    save_file(weights, tmp_path / "sae_weights.safetensors")
    exact = {k: v.float() for k, v in weights.items()}
    x = torch.randn(64, 8)
    pre = x @ exact["W_enc"] + exact["b_enc"]
    with torch.no_grad():
        assert torch.allclose(load_sae(tmp_path).encode(x), pre * (pre > exact["threshold"]), atol=1e-4)


def test_an_imported_saes_training_layer_is_read_from_its_layout():
    from sae_models.sae.formats import trained_layer

    assert [trained_layer(m) for m in ({"layer": 12}, {"hook_name": "blocks.3.hook_resid_post"},
                                       {"hookpoint": "layers.5.mlp"}, {"hook_name": "hook_embed"}, {})] == [
        12, 3, 5, None, None]
    assert trained_layer(load_sae(DICTIONARY_LEARNING / "AutoEncoderTopK").cfg.metadata) == 3


def test_an_older_sparsify_config_with_signed_false_loads_and_true_is_refused(tmp_path):
    folder, coder = _sparsify_folder(tmp_path)
    raw = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps(raw | {"signed": False}))
    x = torch.randn(16, 8)
    with torch.no_grad():
        assert torch.allclose(load_sae(folder)(x), coder(x).sae_out, atol=1e-5)
    (folder / "cfg.json").write_text(json.dumps(raw | {"signed": True}))
    with pytest.raises(SAECheckpointError, match="signed true is not supported"):
        load_sae(folder)


def test_a_norm_scaling_factor_that_would_be_ignored_is_one_clear_error(tmp_path):
    """Set for an SAE that does not use one (another layout, a SAELens SAE on raw activations) or beside an
    activation_scaler.json that already gives it: refused rather than silently dropped."""
    folder, _ = _gemma_scope_folder(tmp_path / "scope")
    with pytest.raises(SAECheckpointError, match="only a SAELens SAE trained with normalize_activations"):
        load_sae(folder, norm_scaling_factor=2.0)
    _sae_lens_saved("topk", tmp_path / "raw")
    with pytest.raises(SAECheckpointError, match="only a SAELens SAE trained with normalize_activations"):
        load_sae(tmp_path / "raw", norm_scaling_factor=2.0)
    _sae_lens_saved("topk", tmp_path / "scaled", normalize_activations="expected_average_only_in")
    (tmp_path / "scaled" / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 2.0}))
    with pytest.raises(SAECheckpointError, match="gives the activation-norm factor: norm_scaling_factor"):
        load_sae(tmp_path / "scaled", norm_scaling_factor=2.0)


def test_a_pre_6_config_with_normalize_activations_true_folds_its_factor(tmp_path):
    """SAELens 5 wrote normalize_activations as a bool: true is expected_average_only_in."""
    theirs = _sae_lens_saved("standard", tmp_path, normalize_activations="expected_average_only_in")
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    legacy = {k: v for k, v in cfg.items() if k not in ("architecture", "metadata")}
    legacy |= {"normalize_activations": True, "activation_fn_str": "relu"}
    (tmp_path / "cfg.json").write_text(json.dumps(legacy))
    x = torch.randn(32, 8)
    with torch.no_grad():
        assert torch.allclose(load_sae(tmp_path, norm_scaling_factor=3.0).encode(x), theirs.encode(x * 3.0), atol=1e-5)
