"""Baseline dictionaries of Cunningham et al. 2023, behind the same interface as the SAEs.

A baseline is a set of n unit directions v_j with decoder directions m_j (equal to v_j for orthonormal
bases). Directions have no sign, so by default each one gives two latents, ReLU(v.x) and ReLU(-v.x); with
``signed`` both halves decode back exactly. As SAELens "standard" SAEs they are
W_enc = [V; -V]^T, W_dec = [M; -M], b_enc = 0, b_dec = the data mean (zero for the neuron basis).

- neuron: the standard basis;  random: a random orthonormal basis;
- pca: scikit-learn PCA components;  ica: scikit-learn FastICA (unmixing rows / mixing columns).
"""

import numpy as np
import torch

from sae_models.sae.base import SAEConfig, SAEConfigError, SAELoss, SparseAutoencoder

BASELINES = ("neuron", "random", "pca", "ica")


class BaselineDictionary(SparseAutoencoder):
    sae_lens_architecture = "standard"
    unit_norm_decoder = False
    architecture = "baseline"

    @classmethod
    def validate(cls, cfg: SAEConfig) -> None:
        if cfg.architecture not in BASELINES:
            raise SAEConfigError(f"baseline {cfg.architecture!r}: expected one of {BASELINES}")
        if cfg.d_sae not in (cfg.d_in, 2 * cfg.d_in):
            raise SAEConfigError(f"{cfg.architecture}: d_sae must be d_in (unsigned) or 2 * d_in (signed)")

    @property
    def signed(self) -> bool:
        return self.cfg.d_sae == 2 * self.cfg.d_in

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def training_loss(self, x, sparsity_scale, dead) -> SAELoss:
        raise TypeError(f"{self.cfg.architecture} is fitted with fit(), not trained")

    @torch.no_grad()
    def fit(self, x: torch.Tensor, seed: int = 0) -> "BaselineDictionary":
        """Set the directions from a sample of activations ``x`` [n, d]."""
        enc, dec, mean = _directions(self.cfg.architecture, x.double().cpu().numpy(), seed)
        if self.signed:
            enc, dec = np.concatenate([enc, -enc]), np.concatenate([dec, -dec])
        self.W_enc.copy_(torch.from_numpy(enc.T))
        self.W_dec.copy_(torch.from_numpy(dec))
        self.b_dec.copy_(torch.from_numpy(mean))
        self.b_enc.zero_()
        return self


def _directions(kind: str, x: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(encoder rows, decoder rows, mean), each direction set [d, d]."""
    d = x.shape[1]
    if kind == "neuron":
        return np.eye(d), np.eye(d), np.zeros(d)
    mean = x.mean(0)
    if kind == "random":
        q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
        return q.T, q.T, mean
    if kind == "pca":
        from sklearn.decomposition import PCA

        comps = PCA(n_components=d, random_state=seed).fit(x).components_
        return comps, comps, mean
    from sklearn.decomposition import FastICA

    ica = FastICA(n_components=d, random_state=seed, max_iter=400, whiten="unit-variance").fit(x)
    mixing = ica.mixing_.T  # [d components, d]: each row a direction in activation space
    norms = np.linalg.norm(mixing, axis=1, keepdims=True)
    return ica.components_ * norms, mixing / norms, ica.mean_
