"""Gated SAE (Rajamanoharan et al. 2024).

pi_gate = W_enc (x - b_dec) + b_gate;  pi_mag = exp(r_mag) * W_enc (x - b_dec) + b_mag;
f = 1[pi_gate > 0] * ReLU(pi_mag);  loss = ||x - x_hat||^2 + lambda ||ReLU(pi_gate)||_1
+ ||x - (W_dec^T ReLU(pi_gate) + b_dec)||^2 with the decoder frozen in that auxiliary term.
Decoder rows are unit norm.
"""

import torch
from torch import nn

from sae_models.sae.base import SAEConfig, SAELoss, SparseAutoencoder, mse_loss


class GatedSAE(SparseAutoencoder):
    architecture = "gated"
    sae_lens_architecture = "gated"
    needs_sparsity_coefficient = True

    def __init__(self, cfg: SAEConfig):
        super().__init__(cfg)
        del self.b_enc
        self.b_gate = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_mag = nn.Parameter(torch.zeros(cfg.d_sae))
        self.r_mag = nn.Parameter(torch.zeros(cfg.d_sae))

    def _paths(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        proj = (x - self.b_dec) @ self.W_enc
        return proj + self.b_gate, proj * self.r_mag.exp() + self.b_mag

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        gate, mag = self._paths(x)
        return (gate > 0) * torch.relu(mag)

    def training_loss(self, x, sparsity_scale, dead) -> SAELoss:
        gate, mag = self._paths(x)
        f = (gate > 0) * torch.relu(mag)
        x_hat = self.decode(f)
        mse = mse_loss(x, x_hat)
        gate_acts = torch.relu(gate)
        sparsity = gate_acts.sum(-1).mean()
        aux = mse_loss(x, gate_acts @ self.W_dec.detach() + self.b_dec.detach())
        total = mse + sparsity_scale * self.cfg.sparsity_coefficient * sparsity + aux
        return SAELoss.from_codes(total, mse, sparsity, x_hat, f, aux)

    def sae_lens_tensors(self) -> dict[str, torch.Tensor]:
        return {"W_enc": self.W_enc, "W_dec": self.W_dec, "b_dec": self.b_dec, "b_gate": self.b_gate,
                "b_mag": self.b_mag, "r_mag": self.r_mag}
