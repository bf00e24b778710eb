"""What every sparse autoencoder shares: config, parameters, the encode/decode interface, decoder geometry.

Weights follow the SAELens layout: ``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_in], ``b_enc`` [d_sae],
``b_dec`` [d_in]. Codes are dense [batch, d_sae] tensors at the interface. In training, once few latents are
active (TopK always; the penalised architectures once the measured density of their active set falls under
``sparse_below``), only the active (token, latent) pairs are touched: the encoder's gradient, the decode and
the decoder's gradient cost O(nnz * d_in) instead of O(batch * d_sae * d_in). The sparse path computes the
same loss and gradients as the dense one, up to float summation order.
"""

from __future__ import annotations

import warnings
from dataclasses import InitVar, asdict, dataclass, field
from typing import ClassVar

import torch
from torch import nn

from sae_models.sae.config import THRESHOLD_WINDOW

# The sparse training path uses CSR matrices on purpose (their kernels are the fast ones); torch flags them beta.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


class SAEConfigError(ValueError):
    """A width, k or coefficient that cannot work; raised before any compute."""


class SAECheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or does not match its config; the message names the file."""


@dataclass(frozen=True)
class SAEConfig:
    architecture: str
    d_in: int
    d_sae: int
    k: int | None = None  # TopK / BatchTopK: active latents per token
    sparsity_coefficient: float = 0.0  # ReLU / Gated / tied: L1 weight; JumpReLU: L0 penalty weight
    target_l0: float | None = None  # JumpReLU
    jumprelu_init_threshold: float = 0.001
    jumprelu_bandwidth: float = 0.001
    threshold_window: float = THRESHOLD_WINDOW  # BatchTopK: threshold EMA window, a fraction of the steps so far
    aux_k_coefficient: float = 1 / 32  # TopK / BatchTopK AuxK weight
    dead_tokens: int = 10_000_000  # a latent silent for this many tokens is dead (AuxK)
    metadata: dict = field(default_factory=dict, hash=False, compare=False)  # hook_name, model_name, ...
    # Retired BatchTopK settings (a fixed EMA beta and start step), still in the cfg.json of SAEs saved before
    # threshold_window: accepted so those load, and ignored (the trained threshold is in their weights).
    threshold_ema_beta: InitVar[float | None] = None
    threshold_ema_start: InitVar[int | None] = None

    def __post_init__(self, threshold_ema_beta, threshold_ema_start) -> None:
        pass

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SAELoss:
    total: torch.Tensor
    mse: torch.Tensor
    sparsity: torch.Tensor
    aux: torch.Tensor
    x_hat: torch.Tensor
    fired: torch.Tensor  # [d_sae] bool: latents active anywhere in the batch (dead-latent tracking)
    l0: float
    sparse: bool = False  # computed on the active pairs only

    @classmethod
    def from_codes(cls, total, mse, sparsity, x_hat, codes, aux=None) -> SAELoss:
        active = codes > 0
        aux = torch.zeros((), device=codes.device) if aux is None else aux
        return cls(total, mse, sparsity, aux, x_hat, active.any(0), active.sum(-1).float().mean().item())

    @classmethod
    def from_active(cls, total, mse, sparsity, x_hat, active: ActiveSet, values, aux=None) -> SAELoss:
        """The sparse path's loss: ``values`` are the codes at the active pairs."""
        aux = torch.zeros((), device=values.device) if aux is None else aux
        return cls(total, mse, sparsity, aux, x_hat, active.fired(values), active.l0(values), sparse=True)


def mse_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Squared L2 reconstruction error per token, averaged over the batch."""
    return (x - x_hat).pow(2).sum(-1).mean()


class SparseAutoencoder(nn.Module):
    """Base class: one file per architecture subclasses it and writes its ``encode`` and ``training_loss``."""

    architecture: ClassVar[str]
    sae_lens_architecture: ClassVar[str]
    unit_norm_decoder: ClassVar[bool] = True
    needs_sparsity_coefficient: ClassVar[bool] = False  # L1 / L0 penalised architectures
    # Penalised architectures train on the active pairs only when at most this fraction of (token, latent)
    # pairs is active; above it the dense matmuls are faster. Set to 0 (always dense) or 1 (always sparse)
    # to compare the paths.
    sparse_below: float = 0.05

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.validate(cfg)
        self.cfg = cfg
        d, f = cfg.d_in, cfg.d_sae
        w_dec = torch.randn(f, d)
        w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(f))
        self.b_dec = nn.Parameter(torch.zeros(d))

    @classmethod
    def validate(cls, cfg: SAEConfig) -> None:
        if cfg.architecture != cls.architecture:
            raise SAEConfigError(f"config architecture {cfg.architecture!r} given to {cls.__name__}")
        if cfg.d_in < 1 or cfg.d_sae < 1:
            raise SAEConfigError(f"{cls.architecture}: d_in ({cfg.d_in}) and d_sae ({cfg.d_sae}) must be >= 1")
        if cls.needs_sparsity_coefficient and cfg.sparsity_coefficient <= 0:
            raise SAEConfigError(f"{cls.architecture}: sparsity_coefficient must be > 0, "
                                 f"got {cfg.sparsity_coefficient}")

    def active_pairs(self, mask: torch.Tensor) -> ActiveSet | None:
        """The active set of a [batch, d_sae] mask when it is sparse enough to train on, else None."""
        if mask.count_nonzero().item() > self.sparse_below * mask.numel():
            return None
        return ActiveSet.from_mask(mask)

    # --- the interface ------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def training_loss(self, x: torch.Tensor, sparsity_scale: float, dead: torch.Tensor | None) -> SAELoss:
        raise NotImplementedError

    # --- hooks the trainer calls --------------------------------------------------------------------
    def init_from_batch(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation before the first step (default: none)."""

    def on_step_end(self, step: int, loss: SAELoss) -> None:
        """Bookkeeping after the optimizer step (e.g. BatchTopK's threshold EMA)."""

    def set_firing_cut(self, cut: torch.Tensor) -> None:
        """Make latent i fire exactly where its projection (x - b_dec) W_enc[:, i] exceeds ``cut[i]`` (e.g. to
        start at a chosen L0); only architectures with per-latent thresholds have it."""
        raise NotImplementedError(f"{self.architecture} has no per-latent threshold to set")

    @torch.no_grad()
    def remove_parallel_grads(self) -> None:
        """Drop the gradient component parallel to each decoder row, so the step keeps ||d_i|| = 1."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            rows = self.W_dec / self.W_dec.norm(dim=-1, keepdim=True)
            self.W_dec.grad -= (self.W_dec.grad * rows).sum(-1, keepdim=True) * rows

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        if self.unit_norm_decoder:
            self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    @torch.no_grad()
    def fold_activation_scale(self, scale: float) -> None:
        """Trained on ``scale * x``: rescale biases (and thresholds) so the SAE takes raw x and returns
        raw x_hat, its codes divided by ``scale``."""
        for name in ("b_dec", "b_enc", "b_gate", "b_mag", "threshold"):
            tensor = getattr(self, name, None)
            if isinstance(tensor, torch.Tensor) and name in dict(self.named_parameters()) | dict(self.named_buffers()):
                tensor.div_(scale)

    # --- export -------------------------------------------------------------------------------------
    def sae_lens_tensors(self) -> dict[str, torch.Tensor]:
        return {"W_enc": self.W_enc, "W_dec": self.W_dec, "b_enc": self.b_enc, "b_dec": self.b_dec}

    def sae_lens_extra_cfg(self) -> dict:
        return {}

    def extra_state_tensors(self) -> dict[str, torch.Tensor]:
        """Non-parameter state that a checkpoint must keep (e.g. a running threshold)."""
        return {}

    def decoder_directions(self) -> torch.Tensor:
        """Unit decoder directions [d_sae, d_in] (what steering adds to the residual stream)."""
        return self.W_dec / self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)


@dataclass
class ActiveSet:
    """The active (row, latent) pairs of a batch in CSR order (rows ascending; latents ascending within a row,
    except from ``from_row_indices`` on the CPU): what the sparse training path works on. Its sparse products
    run on CSR kernels (MKL on the CPU, cuSPARSE on a GPU)."""

    rows: torch.Tensor
    cols: torch.Tensor
    crow: torch.Tensor  # [batch + 1]: row i's pairs are crow[i]:crow[i + 1]
    d_sae: int

    @classmethod
    def from_mask(cls, mask: torch.Tensor) -> ActiveSet:
        rows, cols = mask.nonzero(as_tuple=True)  # row-major: already in CSR order
        return cls.from_pairs(rows, cols, mask.shape[0], mask.shape[1])

    @classmethod
    def from_pairs(cls, rows: torch.Tensor, cols: torch.Tensor, batch: int, d_sae: int) -> ActiveSet:
        """Pairs already in CSR order."""
        crow = torch.zeros(batch + 1, dtype=cols.dtype, device=cols.device)
        crow[1:] = torch.bincount(rows, minlength=batch).cumsum(0)
        return cls(rows, cols, crow, d_sae)

    @classmethod
    def from_row_indices(cls, idx: torch.Tensor, d_sae: int) -> ActiveSet:
        """``idx`` [batch, k]: the same number of latents in every row, in any order (MKL's CSR kernels take
        a row's latents unsorted; on a GPU they are sorted, as cuSPARSE's may not)."""
        batch, k = idx.shape
        rows = torch.arange(batch, device=idx.device).repeat_interleave(k)
        crow = torch.arange(0, batch * k + 1, k, device=idx.device)
        return cls(rows, (idx.sort(dim=-1).values if idx.is_cuda else idx).reshape(-1), crow, d_sae)

    @classmethod
    def stack(cls, first: ActiveSet, second: ActiveSet) -> ActiveSet:
        """Two sets over the same batch as one over twice its rows (``first``'s, then ``second``'s): their
        products then build each weight's gradient in one pass."""
        return cls(torch.cat([first.rows, second.rows + first.batch]), torch.cat([first.cols, second.cols]),
                   torch.cat([first.crow, second.crow[1:] + first.crow[-1]]), first.d_sae)

    @property
    def batch(self) -> int:
        return self.crow.shape[0] - 1

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The [batch, d_sae] sparse matrix holding ``values`` at the pairs."""
        return torch.sparse_csr_tensor(self.crow, self.cols, values, (self.batch, self.d_sae), check_invariants=False)

    def preacts(self, x_c: torch.Tensor, b_dec: torch.Tensor, w_enc: torch.Tensor, b_enc: torch.Tensor | None,
                pre: torch.Tensor) -> torch.Tensor:
        """``pre`` = (x - b_dec) W_enc + b_enc, computed densely from ``x_c`` = x - b_dec (any graph of either
        ignored), at the pairs, differentiable with a sparse backward to ``b_dec``, ``w_enc`` and ``b_enc``
        (None: an architecture that adds its biases itself). x is data: no gradient flows to it. A stacked set
        reads row r of a stack from row r mod batch of ``x_c`` and ``pre``."""
        n = x_c.shape[0]
        rows = self.rows if self.batch == n else self.rows % n
        x_c = x_c.detach() if self.batch == n else x_c.detach().repeat(self.batch // n, 1)
        values = pre.detach()[rows, self.cols].to(w_enc.dtype)
        return SparsePreacts.apply(x_c.to(w_enc.dtype), b_dec, w_enc, b_enc, values, self)

    def decode(self, w_dec: torch.Tensor, b_dec: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """sum_i f_i d_i + b_dec over the pairs only."""
        return SparseDecode.apply(values.to(w_dec.dtype), w_dec, self) + b_dec

    def fired(self, values: torch.Tensor) -> torch.Tensor:
        """[d_sae] bool: latents with a positive code somewhere in the batch."""
        fired = torch.zeros(self.d_sae, dtype=torch.bool, device=values.device)
        fired[self.cols[values > 0]] = True
        return fired

    def l0(self, values: torch.Tensor) -> float:
        return (values > 0).sum().item() / self.batch


class SparsePreacts(torch.autograd.Function):
    """Pre-activations at the pairs of an ``ActiveSet``, with a sparse backward.

    The dense pre-activations are computed once to choose the pairs; this function returns their values there
    and, in backward, builds the encoder gradients from the pairs only: O(nnz * d) instead of
    O(batch * d_sae * d). Every pre-activation of latent j moves by -W_enc[:, j] with b_dec, so b_dec's gradient
    is -W_enc times the per-latent sum of the gradient (b_enc's): no [batch, d] product is needed."""

    @staticmethod
    def forward(ctx, x_c, b_dec, w_enc, b_enc, values, active: ActiveSet):
        ctx.save_for_backward(x_c, w_enc)
        ctx.active = active
        return values.clone()

    @staticmethod
    def backward(ctx, grad):
        x_c, w_enc = ctx.saved_tensors
        active = ctx.active
        grad = grad.to(w_enc.dtype)
        per_latent = torch.zeros(active.d_sae, dtype=grad.dtype, device=grad.device).index_add_(0, active.cols, grad)
        grad_b_dec = -(w_enc @ per_latent) if ctx.needs_input_grad[1] else None
        grad_w = (active.matrix(grad).t() @ x_c).T if ctx.needs_input_grad[2] else None
        grad_b_enc = per_latent if ctx.needs_input_grad[3] else None
        return None, grad_b_dec, grad_w, grad_b_enc, None, None


class SparseDecode(torch.autograd.Function):
    """codes @ W_dec for codes held at the pairs of an ``ActiveSet``: the codes' gradient is sampled at the
    pairs only (grad . d_i) and the decoder's comes from the active rows only. In the weights' dtype (float32)
    under bf16 autocast too: the sparse kernels have no bf16 version on the CPU."""

    @staticmethod
    def forward(ctx, values, w_dec, active: ActiveSet):
        ctx.save_for_backward(values, w_dec)
        ctx.active = active
        with torch.autocast(values.device.type, enabled=False):  # sparse kernels take float32 only
            return active.matrix(values) @ w_dec

    @staticmethod
    def backward(ctx, grad):
        values, w_dec = ctx.saved_tensors
        active = ctx.active
        grad = grad.to(w_dec.dtype).contiguous()
        grad_values = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_values = torch.sparse.sampled_addmm(active.matrix(values), grad, w_dec.T, beta=0.0).values()
        if ctx.needs_input_grad[1]:
            grad_w = active.matrix(values).t() @ grad
        return grad_values, grad_w, None


def geometric_median(x: torch.Tensor, iters: int = 50, eps: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of distances to the rows of ``x``."""
    median = x.mean(0)
    for _ in range(iters):
        weights = 1 / (x - median).norm(dim=-1).clamp_min(eps)
        new = (weights[:, None] * x).sum(0) / weights.sum()
        if (new - median).norm() < eps:
            return new
        median = new
    return median
