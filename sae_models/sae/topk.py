"""TopK SAE (Gao et al. 2024).

f = TopK(ReLU(W_enc (x - b_dec) + b_enc)) with k = the target L0;  loss = ||x - x_hat||^2 + (1/32) AuxK.
AuxK reconstructs the residual x - x_hat from the top-k_aux *dead* latents (k_aux = min(d/2, #dead)) and is
normalised by the residual's variance. b_dec starts at the geometric median of a batch, W_enc as W_dec^T,
and decoder rows stay unit norm. Only the k active latents are decoded (and get gradients).
"""

import torch

from sae_models.sae.base import (
    ActiveSet,
    SAEConfig,
    SAEConfigError,
    SAELoss,
    SparseAutoencoder,
    geometric_median,
    mse_loss,
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

    def active_set(self, pre: torch.Tensor) -> ActiveSet:
        """The k largest pre-activations of each row."""
        return ActiveSet.from_row_indices(pre.topk(self.cfg.k, dim=-1, sorted=False).indices, self.cfg.d_sae)

    def training_loss(self, x, sparsity_scale, dead) -> SAELoss:
        """The main and the AuxK pairs go through the encoder's and the decoder's sparse products as one
        stacked set (main rows, then AuxK rows), so each weight's gradient is built once."""
        with torch.no_grad():
            x_c = x - self.b_dec
            pre = torch.addmm(self.b_enc, x_c, self.W_enc)
        main, aux = self.active_set(pre), self.aux_set(pre, dead)
        both = main if aux is None else ActiveSet.stack(main, aux)
        vals = torch.relu(both.preacts(x_c, self.b_dec, self.W_enc, self.b_enc, pre))
        decoded = both.decode(self.W_dec, torch.zeros_like(self.b_dec), vals)
        n_main = len(main.cols)
        x_hat = decoded[: x.shape[0]] + self.b_dec
        mse = mse_loss(x, x_hat)
        aux_loss = torch.zeros((), device=x.device) if aux is None else self.aux_k_loss(x, x_hat, decoded[x.shape[0]:])
        return SAELoss.from_active(mse + self.cfg.aux_k_coefficient * aux_loss, mse, torch.zeros(()), x_hat, main,
                                   vals[:n_main], aux_loss)

    def aux_set(self, pre: torch.Tensor, dead: torch.Tensor | None) -> ActiveSet | None:
        """AuxK's pairs: each row's top k_aux = min(d/2, #dead) dead latents, chosen among the dead columns."""
        dead_cols = None if dead is None else dead.nonzero().squeeze(1)
        if dead_cols is None or len(dead_cols) == 0:
            return None
        k_aux = min(self.cfg.d_in // 2, len(dead_cols))
        idx = pre.index_select(1, dead_cols).topk(k_aux, dim=-1, sorted=False).indices
        return ActiveSet.from_row_indices(dead_cols[idx], self.cfg.d_sae)

    @staticmethod
    def aux_k_loss(x: torch.Tensor, x_hat: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """The residual's reconstruction error from the dead latents, over the residual's variance."""
        residual = (x - x_hat).detach()
        variance = (residual - residual.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
        return (residual - recon).pow(2).sum(-1).mean() / variance

    def sae_lens_extra_cfg(self) -> dict:
        return {"k": self.cfg.k, "rescale_acts_by_decoder_norm": False}
