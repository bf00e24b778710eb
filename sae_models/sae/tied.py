"""The tied ReLU SAE of Cunningham et al. 2023.

The encoder is the normalised decoder transposed and there is no decoder bias:
f = ReLU(D_n x + b_enc);  x_hat = D_n^T f;  loss = ||x - x_hat||^2 + alpha ||f||_1,
with D_n the decoder rows scaled to unit norm.
"""

import torch

from sae_models.sae.base import SAEConfig, SAELoss, SparseAutoencoder, mse_loss


class TiedSAE(SparseAutoencoder):
    architecture = "tied"
    sae_lens_architecture = "standard"
    unit_norm_decoder = False  # normalised on the fly instead
    needs_sparsity_coefficient = True

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        del self.W_enc  # tied: derived from W_dec
        self.b_dec.requires_grad_(False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.decoder_directions().T + self.b_enc)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.decoder_directions()

    def training_loss(self, x, sparsity_scale, dead) -> SAELoss:
        f = self.encode(x)
        x_hat = self.decode(f)
        mse = mse_loss(x, x_hat)
        sparsity = f.abs().sum(-1).mean()
        total = mse + sparsity_scale * self.cfg.sparsity_coefficient * sparsity
        return SAELoss.from_codes(total, mse, sparsity, x_hat, f)

    def sae_lens_tensors(self) -> dict[str, torch.Tensor]:
        dirs = self.decoder_directions()
        return {"W_enc": dirs.T, "W_dec": dirs, "b_enc": self.b_enc, "b_dec": torch.zeros_like(self.b_dec)}
