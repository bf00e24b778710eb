"""Ground truth checks on the toy world: does some latent fire exactly on a concept's tokens, and how pure is
each latent? Both read one pass of SAE codes over held-out tokens (``HeldOutCodes``).

Concept recovery is scored twice. ``best_f1`` reads "fires" as code > 0, the SAE's own notion of firing; that
penalises a dense dictionary (PCA, ICA, random or neuron directions, whose latents are ReLU(v.x) and so fire
on about half of all tokens) by construction. ``best_f1_swept`` also tries thresholds at fixed fractions of
each latent's held-out max (``SWEEP_FRACTIONS``) and both signs of the code, keeping the best: it asks whether
a direction carries the concept at all, whatever the dictionary's sparsity mechanism.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from sae_models.toyworld.grammar import concepts

CONCEPT_RECOVERY_SCHEMA = pa.schema([
    ("concept", pa.string()), ("kind", pa.string()),
    ("best_f1", pa.float32()), ("best_latent", pa.int32()),  # fires = code > 0
    ("best_f1_swept", pa.float32()), ("swept_latent", pa.int32()),  # fires = sign * code > threshold * max
    ("swept_threshold", pa.float32()),  # a fraction of the latent's held-out max of sign * code
    ("swept_sign", pa.int8()),  # +1, or -1 when the concept sits on the code's negative side; 0: concept absent
])
# Thresholds of the swept F1, as fractions of each latent's max activation on the held-out tokens.
SWEEP_FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)
LATENT_PURITY_SCHEMA = pa.schema([("latent", pa.int32()), ("purity", pa.float64()), ("purity_feature", pa.string())])


def f1_matrix(fires: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[latents, concepts] F1 of "latent fires" against "token carries the concept", from boolean ``fires``
    [tokens, latents] and ``labels`` [tokens, concepts]."""
    f, y = fires.float(), labels.float()
    true_pos = f.T @ y
    denom = f.sum(0)[:, None] + y.sum(0)[None, :]
    return torch.where(denom > 0, 2 * true_pos / denom.clamp_min(1), torch.zeros_like(denom))


def concept_f1(fires: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per concept, the best latent's F1 and that latent's index; a concept absent from the tokens gets F1 0
    and latent -1."""
    best, latent = f1_matrix(fires, labels).max(0)
    latent = torch.where(labels.sum(0) > 0, latent, torch.full_like(latent, -1))
    return best.numpy(), latent.numpy()


@dataclass
class SweptF1:
    """Per concept: the best F1 over latents, thresholds and signs, and where it was found."""

    f1: np.ndarray  # [concepts]
    latent: np.ndarray  # -1 for a concept absent from the tokens
    threshold: np.ndarray  # fraction of the latent's max of sign * code
    sign: np.ndarray  # +1 / -1; 0 for an absent concept


@torch.no_grad()
def concept_f1_swept(codes: torch.Tensor, labels: torch.Tensor,
                     fractions: Sequence[float] = SWEEP_FRACTIONS) -> SweptF1:
    """Per concept, the best F1 over latents l, signs s in (+1, -1) and fractions t of "s * code_l > t * m",
    where m is the max of s * code_l over these tokens (a side that never goes above 0 never fires), against
    "token carries the concept"; from codes [tokens, latents] and boolean ``labels`` [tokens, concepts].

    The sign matters for a code that goes negative: a PCA or ICA direction may carry a concept on its negative
    side. (This repo's baselines already split each direction into ReLU(v.x) and ReLU(-v.x) latents, so there
    the negative side is a latent of its own and -code never fires; SAE codes are >= 0 too.) Ties keep the
    first candidate in the order +1 before -1, then ascending fractions, so s = +1, t = 0 (code > 0, what
    ``concept_f1`` scores) wins its ties and ``f1`` is never below ``concept_f1``'s. The threshold is chosen
    on the tokens it is scored on: one scalar per latent, an optimistic but small selection effect."""
    n_concepts = labels.shape[1]
    best = torch.full((n_concepts,), -1.0)
    latent = torch.zeros(n_concepts, dtype=torch.long)
    threshold = torch.zeros(n_concepts)
    sign = torch.zeros(n_concepts, dtype=torch.int8)
    for s in (1, -1):
        signed = codes.float() * s
        peak = signed.max(0).values if len(signed) else torch.zeros(signed.shape[1])
        for t in fractions:
            fires = (signed > t * peak) & (peak > 0)
            score, idx = f1_matrix(fires, labels).max(0)
            better = score > best
            best = torch.where(better, score, best)
            latent = torch.where(better, idx, latent)
            threshold[better], sign[better] = float(t), s
    present = labels.sum(0) > 0
    return SweptF1(best.clamp_min(0).numpy(), torch.where(present, latent, -1).numpy(),
                   torch.where(present, threshold, 0.0).numpy(), torch.where(present, sign, 0).numpy())


def latent_purity(codes: torch.Tensor, features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per latent, its ground-truth purity and best feature, from codes [tokens, latents] and boolean
    ``features`` [tokens, features] (the concepts, and word identities, each token carries).

    Purity = the share of the latent's activation mass on tokens with its best feature, minus that feature's
    share of all tokens: 1 - base rate for a latent firing only on one rare concept, 0 for a latent whose
    activation is spread like the corpus. Subtracting the base rate keeps "fires on every determiner"
    from counting as pure merely because determiners are everywhere."""
    mass = codes.clamp_min(0).float()
    y = features.float()
    share = (mass.T @ y) / mass.sum(0).clamp_min(1e-12)[:, None]
    best, feature = (share - y.mean(0)).max(1)
    return best.numpy(), feature.numpy()


def token_labels(doc_ids: np.ndarray, positions: np.ndarray, doc_labels: dict[int, list[list[str]]],
                 concepts: list[str]) -> torch.Tensor:
    """[tokens, concepts] bool for activation rows (doc_id, pos): the word-level toy tokenizer puts word
    i of a document at position i + 1 (after BOS)."""
    index = {c: j for j, c in enumerate(concepts)}
    out = torch.zeros(len(doc_ids), len(concepts), dtype=torch.bool)
    for row, (doc, pos) in enumerate(zip(doc_ids.tolist(), positions.tolist(), strict=True)):
        words = doc_labels.get(doc)
        if words is not None and 0 < pos <= len(words):
            for concept in words[pos - 1]:
                out[row, index[concept]] = True
    return out



def labelled_sample(rows: Iterable[tuple[dict, torch.Tensor]], doc_labels: dict[int, list[list[str]]], tokens: int,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A seeded random ``tokens`` of the activation rows (all when fewer), with the concepts each carries:
    (activations [n, d], labels [n, concepts], concept names). ``rows`` as ``ActivationReader.rows()`` yields."""
    names = concepts()
    acts, docs, positions = [], [], []
    for keys, x in rows:
        acts.append(x)
        docs.append(keys["doc_id"])
        positions.append(keys["pos"])
    x, doc_ids, pos = torch.cat(acts), np.concatenate(docs), np.concatenate(positions)
    pick = np.sort(np.random.default_rng(seed).permutation(len(x))[:tokens])
    return x[torch.from_numpy(pick)], token_labels(doc_ids[pick], pos[pick], doc_labels, names), names


@dataclass
class HeldOutCodes:
    """SAE codes [tokens, d_sae] on held-out tokens, their token ids [tokens], and the ground-truth concepts
    each token carries [tokens, concepts] (named by ``names``)."""

    codes: torch.Tensor
    token_ids: torch.Tensor
    truth: torch.Tensor
    names: list[str]


@torch.no_grad()
def encode_held_out(encode: Callable[[torch.Tensor], torch.Tensor], rows: Iterable[tuple[dict, torch.Tensor]],
                    doc_labels: dict[int, list[list[str]]]) -> HeldOutCodes:
    """One pass: ``rows`` yields (keys with doc_id, pos and token_id, activations) as
    ``ActivationReader.rows(("doc_id", "pos", "token_id"))`` does; ``doc_labels`` are the corpus' per-word
    concept labels by document."""
    names = concepts()
    codes, tokens, truth = [], [], []
    for keys, acts in rows:
        codes.append(encode(acts))
        tokens.append(torch.from_numpy(keys["token_id"].astype(np.int64)))
        truth.append(token_labels(keys["doc_id"], keys["pos"], doc_labels, names))
    return HeldOutCodes(torch.cat(codes), torch.cat(tokens), torch.cat(truth), names)


def concept_recovery(held: HeldOutCodes) -> pa.Table:
    """Per ground-truth concept, the best latent's F1 of "fires" vs "token carries it": with fires = code > 0
    (``best_f1``, ``best_latent``), and swept over thresholds and signs (``concept_f1_swept``: ``best_f1_swept``,
    ``swept_latent``, ``swept_threshold`` as a fraction of the latent's max, ``swept_sign``)."""
    f1, latent = concept_f1(held.codes > 0, held.truth)
    swept = concept_f1_swept(held.codes, held.truth)
    return pa.table({"concept": held.names, "kind": [c.split(":")[0] for c in held.names], "best_f1": f1,
                     "best_latent": latent.astype(np.int32), "best_f1_swept": swept.f1,
                     "swept_latent": swept.latent.astype(np.int32), "swept_threshold": swept.threshold,
                     "swept_sign": swept.sign}, schema=CONCEPT_RECOVERY_SCHEMA)


def purity_of_latents(held: HeldOutCodes, text: Callable[[Sequence[int]], list[str]]) -> pa.Table:
    """Per latent, its ground-truth purity (``latent_purity``) over the 26 concepts and the word identities,
    and its best feature (``topic:food``, ``word:the``); ``text`` turns token ids into words."""
    words, word_index = torch.unique(held.token_ids, return_inverse=True)
    features = torch.cat([held.truth, torch.nn.functional.one_hot(word_index, len(words)).bool()], dim=1)
    labels = held.names + [f"word:{w.strip()}" for w in text(words.tolist())]
    purity, best = latent_purity(held.codes, features)
    return pa.table({"latent": np.arange(len(purity), dtype=np.int32), "purity": purity.astype(np.float64),
                     "purity_feature": [labels[b] for b in best]}, schema=LATENT_PURITY_SCHEMA)
