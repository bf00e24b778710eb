"""What every sparse autoencoder shares: config, parameters, the encode/decode interface, decoder geometry.

Weights follow the SAELens layout: ``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_in], ``b_enc`` [d_sae],
``b_dec`` [d_in]. Codes are dense [batch, d_sae] tensors at the interface; architectures whose codes are
k-sparse also expose a sparse decode used in training, where only active latents are touched.
"""

from __future__ import annotations

from dataclasses import InitVar, asdict, dataclass, field
from typing import ClassVar

import torch
from torch import nn

from sae_models.sae.config import THRESHOLD_WINDOW


class SAEConfigError(ValueError):
    """A width, k or coefficient that cannot work; raised before any compute."""


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

    @classmethod
    def from_codes(cls, total, mse, sparsity, x_hat, codes, aux=None) -> SAELoss:
        active = codes > 0
        aux = torch.zeros((), device=codes.device) if aux is None else aux
        return cls(total, mse, sparsity, aux, x_hat, active.any(0), active.sum(-1).float().mean().item())


def mse_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Squared L2 reconstruction error per token, averaged over the batch."""
    return (x - x_hat).pow(2).sum(-1).mean()


class SparseAutoencoder(nn.Module):
    """Base class: one file per architecture subclasses it and writes its ``encode`` and ``training_loss``."""

    architecture: ClassVar[str]
    sae_lens_architecture: ClassVar[str]
    unit_norm_decoder: ClassVar[bool] = True
    needs_sparsity_coefficient: ClassVar[bool] = False  # L1 / L0 penalised architectures

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


class SparsePreacts(torch.autograd.Function):
    """Pre-activations at a sparse set of (row, latent) positions, with a sparse backward.

    The dense pre-activations are computed once (without a graph) to choose the active set; this function
    returns their values there and, in backward, builds the encoder gradients from the active entries
    only: O(nnz * d) instead of O(batch * d_sae * d).
    """

    @staticmethod
    def forward(ctx, x_c, w_enc, b_enc, values, rows, cols):
        ctx.save_for_backward(x_c, w_enc, rows, cols)
        ctx.d_sae = w_enc.shape[1]
        return values.clone()

    @staticmethod
    def backward(ctx, grad):
        x_c, w_enc, rows, cols = ctx.saved_tensors
        sparse = torch.sparse_coo_tensor(torch.stack([rows, cols]), grad, (x_c.shape[0], ctx.d_sae),
                                         check_invariants=False)
        grad_x = torch.sparse.mm(sparse, w_enc.T) if ctx.needs_input_grad[0] else None
        grad_w = torch.sparse.mm(sparse.t(), x_c).T if ctx.needs_input_grad[1] else None
        grad_b = torch.zeros(ctx.d_sae, dtype=grad.dtype, device=grad.device).index_add_(0, cols, grad)
        return grad_x, grad_w, grad_b, None, None, None


def sparse_decode(w_dec: torch.Tensor, b_dec: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                  values: torch.Tensor, batch: int) -> torch.Tensor:
    """sum_i f_i d_i + b_dec over the active (row, latent) pairs only; ``rows`` must be sorted."""
    offsets = torch.searchsorted(rows, torch.arange(batch, device=rows.device))
    out = nn.functional.embedding_bag(cols, w_dec, offsets, mode="sum", per_sample_weights=values)
    return out + b_dec


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
