"""Oracle dictionaries: one latent per ground-truth concept, built from labelled activations, and copies of
known, lower quality. Where the truth is known (the toy world), they are the dictionaries an instrument must
rank correctly: an instrument that cannot tell the clean oracle from its corrupted copies measures nothing.

- Encoder: Fisher's linear discriminant of the concept against the rest, w = (S + ridge I)^-1 (mu_c - mu),
  with S the covariance of the activations, and a cut chosen on the fitting tokens to maximise F1 of
  "fires" against "carries the concept". The code is ReLU(w . (x - mu) - cut): zero off the concept.
- Decoder: the class-mean difference mu_c - mu_rest, the concept's direction at the layer, scaled so that
  decoding the latent's largest code gives back that difference: m_f, the largest decoded norm that steering
  multiplies by its factors, is then the concept's own offset, and factor 1 adds it once.
- Corruption at level q with seed s: a seeded random round(q * n) of the latents get a random unit direction
  r in place of both their encoder and decoder directions (each keeps its norm; the cut is set again so the
  latent fires as often as before). Encoder and decoder change together, so no choice of steering factor or
  threshold restores the concept's direction; level 1 is a dictionary of random directions with the oracle's
  sparsity (a random direction still overlaps the concepts' span by chance: with d_model 64 and 26 concepts, a
  good part of its energy). Each (level, seed) draws its own latents and directions, so the copies of one seed
  are not nested; the caller fits each seed on its own sample of tokens, so the level-0 copies differ too.

As SAELens "standard" SAEs: W_enc [d_in, n], W_dec [n, d_in], b_enc = -cut, b_dec = mu.
"""

from __future__ import annotations

import numpy as np
import torch

from sae_models.sae.base import SAEConfig, SAEConfigError, SparseAutoencoder

ARCHITECTURE = "oracle"
RIDGE = 1e-3  # times the mean variance: keeps the discriminant defined when a direction has no variance


class OracleLabelError(ValueError):
    """Labels an oracle cannot be built from (a concept without tokens, a shape mismatch); names it."""


class OracleDictionary(SparseAutoencoder):
    architecture = ARCHITECTURE
    sae_lens_architecture = "standard"
    unit_norm_decoder = False

    @classmethod
    def validate(cls, cfg: SAEConfig) -> None:
        super().validate(cfg)
        concepts = cfg.metadata.get("concepts")
        if concepts is not None and len(concepts) != cfg.d_sae:
            raise SAEConfigError(f"oracle: {len(concepts)} concept names for d_sae {cfg.d_sae}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def training_loss(self, x, sparsity_scale, dead):
        raise TypeError("an oracle dictionary is built from labels with fit_oracle(), not trained")


def fit_oracle(x: torch.Tensor, labels: torch.Tensor, concepts: list[str], corruption: float = 0.0, seed: int = 0,
               metadata: dict | None = None) -> OracleDictionary:
    """The oracle of ``concepts`` from activations ``x`` [n, d] and boolean ``labels`` [n, len(concepts)], with
    ``corruption`` (a fraction of latents, 0..1) replaced under ``seed``. A concept on no token of the sample (or
    on every one) gets no latent: its name is kept in the metadata's ``left_out``."""
    if labels.shape != (x.shape[0], len(concepts)):
        raise OracleLabelError(f"labels {tuple(labels.shape)} do not match {x.shape[0]} tokens x {len(concepts)} "
                               "concepts")
    if not 0.0 <= corruption <= 1.0:
        raise OracleLabelError(f"corruption {corruption} is not a fraction in [0, 1]")
    y = labels.numpy().astype(bool)
    usable = (y.sum(0) > 0) & (y.sum(0) < len(y))  # a concept on no token, or on all, has no direction
    if not usable.any():
        raise OracleLabelError(f"none of the concepts {concepts} is on some tokens and off others in the fitting "
                               "sample: no direction separates any of them")
    left_out = [c for c, ok in zip(concepts, usable, strict=True) if not ok]
    concepts, y = [c for c, ok in zip(concepts, usable, strict=True) if ok], y[:, usable]
    xs = x.double().numpy()
    mean = xs.mean(0)
    enc, dec = _discriminants(xs - mean, y)
    cut = _best_cuts((xs - mean) @ enc.T, y)
    enc, dec, cut = _corrupt(enc, dec, cut, xs - mean, corruption, seed)
    dec = _scaled_decoder(dec, np.maximum((xs - mean) @ enc.T - cut, 0.0))
    meta = {**(metadata or {}), "concepts": concepts, "left_out": left_out, "corruption": corruption,
            "corruption_seed": seed}
    oracle = OracleDictionary(SAEConfig(ARCHITECTURE, x.shape[1], len(concepts), metadata=meta))
    with torch.no_grad():
        oracle.W_enc.copy_(torch.from_numpy(enc.T))
        oracle.W_dec.copy_(torch.from_numpy(dec))
        oracle.b_enc.copy_(torch.from_numpy(-cut))
        oracle.b_dec.copy_(torch.from_numpy(mean))
    return oracle


def _discriminants(xc: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Fisher discriminants [n, d], class-mean differences [n, d]) of each concept against the rest."""
    cov = xc.T @ xc / len(xc)
    cov += RIDGE * np.trace(cov) / len(cov) * np.eye(len(cov))
    on = (y.T @ xc) / y.sum(0)[:, None]
    off = ((~y).T @ xc) / (~y).sum(0)[:, None]
    return np.linalg.solve(cov, on.T).T, on - off


def _best_cuts(proj: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per latent, the cut on its projection whose "fires" (projection > cut) has the best F1 against its
    concept: the tokens sorted by projection, every prefix tried, the cut halfway to the next token."""
    cuts = np.empty(proj.shape[1])
    for j in range(proj.shape[1]):
        order = np.argsort(-proj[:, j], kind="stable")
        ranked = proj[order, j]
        hits = np.cumsum(y[order, j])
        f1 = 2 * hits / (np.arange(1, len(ranked) + 1) + hits[-1])
        k = int(f1.argmax())
        cuts[j] = (ranked[k] + ranked[k + 1]) / 2 if k + 1 < len(ranked) else ranked[k] - 1.0
    return cuts


def _corruption_draw(n: int, corruption: float, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    """The latents a corruption level replaces, and the generator that then draws their directions: each level
    its own draw (so the levels' corrupted sets are not nested)."""
    rng = np.random.default_rng([seed, n, round(corruption * 1000)])
    return rng.permutation(n)[:round(corruption * n)], rng


def corrupted_latents(n: int, corruption: float, seed: int) -> np.ndarray:
    """Sorted indices of the latents an oracle of ``n`` latents at this corruption level and seed replaced."""
    return np.sort(_corruption_draw(n, corruption, seed)[0])


def _corrupt(enc: np.ndarray, dec: np.ndarray, cut: np.ndarray, xc: np.ndarray, corruption: float, seed: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replace both directions of a seeded random round(corruption * n) latents by one random unit direction
    each (norms kept), with cuts that keep each latent's firing rate."""
    hit, rng = _corruption_draw(len(enc), corruption, seed)
    if not len(hit):
        return enc, dec, cut
    enc, dec, cut = enc.copy(), dec.copy(), cut.copy()
    r = rng.standard_normal((len(hit), enc.shape[1]))
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    rate = (xc @ enc[hit].T > cut[hit]).mean(0)
    enc[hit] = r * np.linalg.norm(enc[hit], axis=1, keepdims=True)
    dec[hit] = r * np.linalg.norm(dec[hit], axis=1, keepdims=True)
    proj = xc @ enc[hit].T
    cut[hit] = [np.quantile(proj[:, j], 1.0 - rate[j]) for j in range(len(hit))]
    return enc, dec, cut


def _scaled_decoder(dec: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Each decoder row scaled so that the latent's largest code decodes to the row's own norm (the
    class-mean difference, for a clean latent); a latent that never fires keeps its row."""
    top = codes.max(0)
    return dec / np.where(top > 0, top, 1.0)[:, None]
