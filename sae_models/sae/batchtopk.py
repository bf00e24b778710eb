"""BatchTopK SAE (Bussmann et al. 2024).

Training keeps the top k * B activations across the whole batch (so L0 varies per token, averaging k).
Inference uses one global threshold theta, an EMA (beta 0.999, from step ``threshold_ema_start``) of the
smallest activation kept in training: f = ReLU(z) * 1[ReLU(z) > theta]. Saved for SAELens as a JumpReLU
SAE with every latent's threshold set to theta. AuxK and the decoder constraint are as in TopK.
"""

import torch

from sae_models.sae.base import SAELoss
from sae_models.sae.topk import TopKSAE


class BatchTopKSAE(TopKSAE):
    architecture = "batchtopk"
    sae_lens_architecture = "jumprelu"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.zeros(()))
        self._min_kept: float | None = None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        acts = torch.relu(self.preacts(x))
        return acts * (acts > self.threshold)

    def active_set(self, pre: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The k * B largest positive activations of the batch, rows sorted.

        Exact and fast: every kept activation is among its row's top ``4k`` unless some row places all 4k
        candidates in the kept set, so the batch selection runs on the [B, 4k] candidates, falling back to
        the whole batch only in that case."""
        acts = torch.relu(pre)
        batch, width = acts.shape
        n_keep = min(self.cfg.k * batch, acts.numel())
        per_row = min(width, 4 * self.cfg.k)
        cand_vals, cand_idx = acts.topk(per_row, dim=-1)
        chosen = cand_vals.flatten().topk(n_keep).indices
        if per_row < width and bool((torch.bincount(chosen // per_row, minlength=batch) == per_row).any()):
            cand_vals, cand_idx = acts, torch.arange(width, device=acts.device).expand(batch, width)
            chosen = acts.flatten().topk(n_keep).indices
        keep = torch.zeros(cand_vals.numel(), dtype=torch.bool, device=acts.device)
        keep[chosen] = True
        rows, slots = (keep.view_as(cand_vals) & (cand_vals > 0)).nonzero(as_tuple=True)
        kept = cand_vals[rows, slots]
        self._min_kept = kept.min().item() if len(kept) else None
        return rows, cand_idx[rows, slots]

    @torch.no_grad()
    def on_step_end(self, step: int, loss: SAELoss) -> None:
        if step < self.cfg.threshold_ema_start or self._min_kept is None:
            return
        if step == self.cfg.threshold_ema_start or float(self.threshold) == 0.0:
            self.threshold.fill_(self._min_kept)
        else:
            beta = self.cfg.threshold_ema_beta
            self.threshold.mul_(beta).add_((1 - beta) * self._min_kept)

    def sae_lens_tensors(self) -> dict[str, torch.Tensor]:
        return {**super().sae_lens_tensors(), "threshold": self.threshold.expand(self.cfg.d_sae)}

    def sae_lens_extra_cfg(self) -> dict:
        return {}

    def extra_state_tensors(self) -> dict[str, torch.Tensor]:
        return {"threshold": self.threshold}
