"""ReLU SAE, Anthropic's April-2024 update.

f = ReLU(W_enc (x - b_dec) + b_enc);  x_hat = W_dec f + b_dec;
loss = ||x - x_hat||^2 + lambda * sum_i f_i ||d_i||.
The decoder is not constrained to unit norm: the penalty weighs each code by its decoder row's norm
instead. The trainer clips gradients to norm 1.
"""

import torch

from sae_models.sae.base import SAELoss, SparseAutoencoder, mse_loss


class ReLUSAE(SparseAutoencoder):
    architecture = "relu"
    sae_lens_architecture = "standard"
    unit_norm_decoder = False
    needs_sparsity_coefficient = True

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def training_loss(self, x, sparsity_scale, dead) -> SAELoss:
        f = self.encode(x)
        x_hat = self.decode(f)
        mse = mse_loss(x, x_hat)
        sparsity = (f * self.W_dec.norm(dim=-1)).sum(-1).mean()
        total = mse + sparsity_scale * self.cfg.sparsity_coefficient * sparsity
        return SAELoss.from_codes(total, mse, sparsity, x_hat, f)
