"""Gated SAE (Rajamanoharan et al. 2024).

pi_gate = W_enc (x - b_dec) + b_gate;  pi_mag = exp(r_mag) * W_enc (x - b_dec) + b_mag;
f = 1[pi_gate > 0] * ReLU(pi_mag);  loss = ||x - x_hat||^2 + lambda ||ReLU(pi_gate)||_1
+ ||x - (W_dec^T ReLU(pi_gate) + b_dec)||^2 with the decoder frozen in that auxiliary term.
Decoder rows are unit norm. Every gradient of the loss lives where the gate is open (pi_gate > 0), so once
few gates open training touches only those pairs; the main and the auxiliary decode share that set.
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

    def _paths(self, proj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pi_gate, pi_mag) from the shared projection W_enc (x - b_dec), dense or at the active pairs."""
        return proj + self.b_gate, proj * self.r_mag.exp() + self.b_mag

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        gate, mag = self._paths((x - self.b_dec) @ self.W_enc)
        return (gate > 0) * torch.relu(mag)

    @torch.no_grad()
    def set_firing_cut(self, cut: torch.Tensor) -> None:
        self.b_gate.copy_(-cut)

    def training_loss(self, x, sparsity_scale, dead) -> SAELoss:
        x_c = x - self.b_dec
        proj = x_c @ self.W_enc
        active = self.active_pairs(proj + self.b_gate > 0)
        if active is None:
            gate, mag = self._paths(proj)
            f = (gate > 0) * torch.relu(mag)
            gate_acts = torch.relu(gate)
            x_hat = self.decode(f)
            gate_hat = gate_acts @ self.W_dec.detach() + self.b_dec.detach()
        else:  # on the open gates: ReLU(pi_gate) = pi_gate, f = ReLU(pi_mag)
            proj_open = active.preacts(x_c, self.b_dec, self.W_enc, None, proj)
            cols = active.cols
            gate_acts = proj_open + self.b_gate[cols]
            f = torch.relu(proj_open * self.r_mag.exp()[cols] + self.b_mag[cols])
            x_hat = active.decode(self.W_dec, self.b_dec, f)
            gate_hat = active.decode(self.W_dec.detach(), self.b_dec.detach(), gate_acts)
        mse = mse_loss(x, x_hat)
        sparsity = gate_acts.sum() / x.shape[0]
        aux = mse_loss(x, gate_hat)
        total = mse + sparsity_scale * self.cfg.sparsity_coefficient * sparsity + aux
        if active is None:
            return SAELoss.from_codes(total, mse, sparsity, x_hat, f, aux)
        return SAELoss.from_active(total, mse, sparsity, x_hat, active, f, aux)

    def sae_lens_tensors(self) -> dict[str, torch.Tensor]:
        return {"W_enc": self.W_enc, "W_dec": self.W_dec, "b_dec": self.b_dec, "b_gate": self.b_gate,
                "b_mag": self.b_mag, "r_mag": self.r_mag}
