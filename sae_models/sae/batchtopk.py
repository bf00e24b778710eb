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
        acts = torch.relu(pre)
        flat = acts.flatten().topk(self.cfg.k * pre.shape[0]).indices.sort().values
        rows, cols = flat // pre.shape[1], flat % pre.shape[1]
        kept = acts[rows, cols]
        self._min_kept = kept[kept > 0].min().item() if bool((kept > 0).any()) else None
        return rows, cols

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
