"""TopK SAE (Gao et al. 2024).

f = TopK(ReLU(W_enc (x - b_dec) + b_enc)) with k = the target L0;  loss = ||x - x_hat||^2 + (1/32) AuxK.
AuxK reconstructs the residual x - x_hat from the top-k_aux *dead* latents (k_aux = min(d/2, #dead)) and is
normalised by the residual's variance. b_dec starts at the geometric median of a batch, W_enc as W_dec^T,
and decoder rows stay unit norm. Only the k active latents are decoded (and get gradients).
"""

import torch

from sae_models.sae.base import (
    SAEConfig,
    SAEConfigError,
    SAELoss,
    SparseAutoencoder,
    SparsePreacts,
    geometric_median,
    mse_loss,
    sparse_decode,
)


class TopKSAE(SparseAutoencoder):
    architecture = "topk"
    sae_lens_architecture = "topk"

    @classmethod
    def validate(cls, cfg: SAEConfig) -> None:
        super().validate(cfg)
        if cfg.k is None or not 1 <= cfg.k <= cfg.d_sae:
            raise SAEConfigError(f"{cls.architecture}: k must be in 1..d_sae ({cfg.d_sae}), got {cfg.k}")

    def preacts(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        acts = torch.relu(self.preacts(x))
        vals, idx = acts.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(acts).scatter_(-1, idx, vals)

    @torch.no_grad()
    def init_from_batch(self, x: torch.Tensor) -> None:
        self.b_dec.copy_(geometric_median(x.float()))

    def active_set(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, cols) of the kept latents, rows sorted."""
        idx = torch.relu(pre).topk(self.cfg.k, dim=-1).indices
        rows = torch.arange(pre.shape[0], device=pre.device).repeat_interleave(self.cfg.k)
        return rows, idx.reshape(-1)

    def _sparse_codes(self, x_c, pre, rows, cols) -> torch.Tensor:
        return torch.relu(SparsePreacts.apply(x_c, self.W_enc, self.b_enc, pre[rows, cols], rows, cols))

    def training_loss(self, x, sparsity_scale, dead) -> SAELoss:
        x_c = x - self.b_dec
        with torch.no_grad():
            pre = x_c @ self.W_enc + self.b_enc
        rows, cols = self.active_set(pre)
        vals = self._sparse_codes(x_c, pre, rows, cols)
        x_hat = sparse_decode(self.W_dec, self.b_dec, rows, cols, vals, x.shape[0])
        mse = mse_loss(x, x_hat)
        aux = self.aux_k_loss(x, x_c, x_hat, pre, dead)
        fired = torch.zeros(self.cfg.d_sae, dtype=torch.bool, device=x.device)
        fired[cols[vals > 0]] = True
        return SAELoss(mse + self.cfg.aux_k_coefficient * aux, mse, torch.zeros(()), aux, x_hat, fired,
                       (vals > 0).sum().item() / x.shape[0])

    def aux_k_loss(self, x, x_c, x_hat, pre, dead) -> torch.Tensor:
        n_dead = 0 if dead is None else int(dead.sum())
        if n_dead == 0:
            return torch.zeros((), device=x.device)
        k_aux = min(self.cfg.d_in // 2, n_dead)
        masked = torch.where(dead, pre, torch.full_like(pre, -torch.inf))
        idx = masked.topk(k_aux, dim=-1).indices
        rows = torch.arange(x.shape[0], device=x.device).repeat_interleave(k_aux)
        cols = idx.reshape(-1)
        vals = torch.relu(SparsePreacts.apply(x_c, self.W_enc, self.b_enc, pre[rows, cols], rows, cols))
        residual = (x - x_hat).detach()
        recon = sparse_decode(self.W_dec, torch.zeros_like(self.b_dec), rows, cols, vals, x.shape[0])
        variance = (residual - residual.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
        return (residual - recon).pow(2).sum(-1).mean() / variance

    def sae_lens_extra_cfg(self) -> dict:
        return {"k": self.cfg.k, "rescale_acts_by_decoder_norm": False}
