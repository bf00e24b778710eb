"""JumpReLU SAE (Rajamanoharan et al. 2024), as in dictionary_learning's trainer.

z = W_enc (x - b_dec) + b_enc;  f = z * 1[z > theta] with a per-latent theta (init 0.001, learned as log theta).
The step's gradient reaches theta through a straight-through estimator with a rectangle kernel of width
``jumprelu_bandwidth``. Sparsity loss on L0: lambda * (L0 / target_l0 - 1)^2. Adam betas (0, 0.999).
Gradients live where z > theta (to z and theta) and inside the kernel's window around theta (to theta only):
once that set is sparse, training touches only those pairs.
"""

import math

import torch
from torch import nn

from sae_models.sae.base import SAEConfig, SAEConfigError, SAELoss, SparseAutoencoder, mse_loss


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u)


class _JumpReLU(torch.autograd.Function):
    """z * H(z - theta); d/dtheta = -(theta / eps) K((z - theta) / eps), d/dz = H(z - theta)."""

    @staticmethod
    def forward(ctx, z, theta, bandwidth):
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return z * (z > theta)

    @staticmethod
    def backward(ctx, grad):
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_theta = -(theta / eps) * _rectangle((z - theta) / eps) * grad
        return (z > theta) * grad, grad_theta.sum_to_size(theta.shape), None


class _Step(torch.autograd.Function):
    """H(z - theta); d/dtheta = -(1 / eps) K((z - theta) / eps), no gradient to z."""

    @staticmethod
    def forward(ctx, z, theta, bandwidth):
        ctx.save_for_backward(z, theta)
        ctx.bandwidth = bandwidth
        return (z > theta).to(z)

    @staticmethod
    def backward(ctx, grad):
        z, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        return None, (-(1 / eps) * _rectangle((z - theta) / eps) * grad).sum_to_size(theta.shape), None


class JumpReLUSAE(SparseAutoencoder):
    architecture = "jumprelu"
    sae_lens_architecture = "jumprelu"
    adam_betas = (0.0, 0.999)
    needs_sparsity_coefficient = True

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        self.log_threshold = nn.Parameter(torch.full((cfg.d_sae,), math.log(cfg.jumprelu_init_threshold)))

    @classmethod
    def validate(cls, cfg: SAEConfig) -> None:
        super().validate(cfg)
        if cfg.target_l0 is None or not 0 < cfg.target_l0 <= cfg.d_sae:
            raise SAEConfigError(f"jumprelu: target_l0 must be in (0, d_sae={cfg.d_sae}], got {cfg.target_l0}")

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    def preacts(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.preacts(x)
        return z * (z > self.threshold)

    @torch.no_grad()
    def set_firing_cut(self, cut: torch.Tensor) -> None:
        """theta = cut with b_enc = 0 (theta is positive: a cut at or below 0 becomes 1e-6)."""
        self.b_enc.zero_()
        self.log_threshold.copy_(cut.clamp_min(1e-6).log())

    def training_loss(self, x, sparsity_scale, dead) -> SAELoss:
        x_c = x - self.b_dec
        z = torch.addmm(self.b_enc, x_c, self.W_enc)
        theta = self.threshold
        eps = self.cfg.jumprelu_bandwidth
        with torch.no_grad():  # z > theta, or inside the kernel's window: (z - theta) / eps > -1/2 covers both
            active = self.active_pairs((z - theta) / eps > -0.5)
        if active is not None:  # the same functions on the pairs that carry a gradient; theta gathered per pair
            z, theta = active.preacts(x_c, self.b_dec, self.W_enc, self.b_enc, z), theta[active.cols]
        f = _JumpReLU.apply(z, theta, eps)
        l0 = _Step.apply(z, theta, eps).sum() / x.shape[0]
        x_hat = self.decode(f) if active is None else active.decode(self.W_dec, self.b_dec, f)
        mse = mse_loss(x, x_hat)
        sparsity = (l0 / self.cfg.target_l0 - 1).pow(2)
        total = mse + sparsity_scale * self.cfg.sparsity_coefficient * sparsity
        if active is None:
            return SAELoss.from_codes(total, mse, sparsity, x_hat, f)
        return SAELoss.from_active(total, mse, sparsity, x_hat, active, f)

    @torch.no_grad()
    def fold_activation_scale(self, scale: float) -> None:
        super().fold_activation_scale(scale)
        self.log_threshold.sub_(math.log(scale))

    def sae_lens_tensors(self) -> dict[str, torch.Tensor]:
        return {**super().sae_lens_tensors(), "threshold": self.threshold}
