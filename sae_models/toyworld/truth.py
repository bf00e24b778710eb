"""Ground truth checks on the toy world: does some latent fire exactly on a concept's tokens?"""

import numpy as np
import torch


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

