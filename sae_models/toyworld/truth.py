"""Ground truth checks on the toy world: does some latent fire exactly on a concept's tokens?"""

import numpy as np
import torch


def concept_f1(fires: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per concept, the best latent's F1 of "latent fires" against "token carries the concept".

    ``fires`` [tokens, latents] and ``labels`` [tokens, concepts] are boolean. Returns (best F1, best
    latent index) per concept; a concept absent from the tokens gets F1 0 and latent -1.
    """
    f, y = fires.float(), labels.float()
    true_pos = f.T @ y  # [latents, concepts]
    denom = f.sum(0)[:, None] + y.sum(0)[None, :]
    f1 = torch.where(denom > 0, 2 * true_pos / denom.clamp_min(1), torch.zeros_like(denom))
    best, latent = f1.max(0)
    latent = torch.where(y.sum(0) > 0, latent, torch.full_like(latent, -1))
    return best.numpy(), latent.numpy()


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
