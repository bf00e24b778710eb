"""ReLU SAE, Anthropic's April-2024 update.

f = ReLU(W_enc (x - b_dec) + b_enc);  x_hat = W_dec f + b_dec;
loss = ||x - x_hat||^2 + lambda * sum_i f_i ||d_i||.
The decoder is not constrained to unit norm: the penalty weighs each code by its decoder row's norm
instead. The trainer clips gradients to norm 1. Once the codes are sparse, training touches only the
positive pre-activations (the only ones with a gradient).
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

    @torch.no_grad()
    def set_firing_cut(self, cut: torch.Tensor) -> None:
        self.b_enc.copy_(-cut)

    def training_loss(self, x, sparsity_scale, dead) -> SAELoss:
        x_c = x - self.b_dec
        pre = torch.addmm(self.b_enc, x_c, self.W_enc)
        active = self.active_pairs(pre > 0)
        if active is None:
            f = torch.relu(pre)
            x_hat = self.decode(f)
            sparsity = (f * self.W_dec.norm(dim=-1)).sum(-1).mean()
        else:
            f = active.preacts(x_c, self.b_dec, self.W_enc, self.b_enc, pre)
            x_hat = active.decode(self.W_dec, self.b_dec, f)
            sparsity = (f * self.W_dec.norm(dim=-1)[active.cols]).sum() / x.shape[0]
        mse = mse_loss(x, x_hat)
        total = mse + sparsity_scale * self.cfg.sparsity_coefficient * sparsity
        if active is None:
            return SAELoss.from_codes(total, mse, sparsity, x_hat, f)
        return SAELoss.from_active(total, mse, sparsity, x_hat, active, f)
