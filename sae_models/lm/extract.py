"""Batched activation extraction at one hook point, stopping the forward pass there.

Yields plain numpy batches (doc_id, pos, token_id, act) of the tokens that count: BOS, EOS and padding
are masked, and optionally high-norm outliers (attention sinks) above a multiple of the batch median.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch

from sae_models.lm.config import ExtractionConfig
from sae_models.lm.hooks import StopForward, capture, hook_module
from sae_models.lm.intervene import tokenize
from sae_models.lm.loading import LoadedLM

ACT_DTYPES = {"float16": torch.float16, "float32": torch.float32}


@dataclass
class ActivationBatch:
    doc_id: np.ndarray  # int64 [n]
    pos: np.ndarray  # int32 [n]
    token_id: np.ndarray  # int32 [n]
    act: np.ndarray  # [n, d_model], float16 or float32
    dropped_outliers: int = 0

    def __len__(self) -> int:
        return len(self.doc_id)

    def head(self, n: int) -> ActivationBatch:
        return ActivationBatch(self.doc_id[:n], self.pos[:n], self.token_id[:n], self.act[:n],
                               self.dropped_outliers)


def forward_to(lm: LoadedLM, module: torch.nn.Module, input_ids: torch.Tensor,
               attention_mask: torch.Tensor) -> torch.Tensor:
    """Run the model only as far as ``module`` and return its output hidden states."""
    with capture(module, stop=True) as store, suppress(StopForward):
        lm.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    if not store:
        raise RuntimeError(f"hook module {type(module).__name__} was never reached in the forward pass")
    return store[0]


def _masked_ids(tokenizer) -> torch.Tensor:
    ids = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    return torch.tensor(sorted(i for i in ids if i is not None))


def _keep_mask(input_ids, attention_mask, acts, masked_ids, outlier_multiple: float) -> tuple[torch.Tensor, int]:
    keep = attention_mask.bool() & ~torch.isin(input_ids, masked_ids)
    if outlier_multiple <= 0 or not keep.any():
        return keep, 0
    norms = acts.float().norm(dim=-1)
    outliers = keep & (norms > outlier_multiple * norms[keep].median())
    return keep & ~outliers, int(outliers.sum())


def _batches(docs: Iterable[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    it = iter(docs)
    while chunk := list(islice(it, size)):
        yield chunk


@torch.inference_mode()
def iter_activations(lm: LoadedLM, docs: Iterable[tuple[int, str]], cfg: ExtractionConfig, *, layer: int,
                     site: str = "resid_post", max_tokens: int | None = None) -> Iterator[ActivationBatch]:
    """Activations of ``docs`` (doc_id, text) at the hook point (layer, site), until ``max_tokens`` are out."""
    module = hook_module(lm.model, layer, site)
    masked_ids = _masked_ids(lm.tokenizer).to(lm.device)
    remaining = max_tokens if max_tokens is not None else float("inf")
    for chunk in _batches(docs, cfg.batch_size):
        if remaining <= 0:
            return
        batch = extract_batch(lm, module, chunk, cfg, masked_ids)
        if len(batch) > remaining:
            batch = batch.head(int(remaining))
        remaining -= len(batch)
        yield batch


def extract_batch(lm: LoadedLM, module: torch.nn.Module, chunk: Sequence[tuple[int, str]],
                  cfg: ExtractionConfig, masked_ids: torch.Tensor) -> ActivationBatch:
    enc = tokenize(lm, [text for _, text in chunk], padding_side="right", max_length=cfg.context)
    input_ids, attention_mask = enc["input_ids"], enc["attention_mask"]
    acts = forward_to(lm, module, input_ids, attention_mask)
    keep, dropped = _keep_mask(input_ids, attention_mask, acts, masked_ids, cfg.drop_outlier_norm)
    rows, pos = keep.nonzero(as_tuple=True)
    doc_ids = torch.tensor([d for d, _ in chunk], dtype=torch.int64)
    return ActivationBatch(
        doc_id=doc_ids[rows.cpu()].numpy(),
        pos=pos.to(torch.int32).cpu().numpy(),
        token_id=input_ids[rows, pos].to(torch.int32).cpu().numpy(),
        act=acts[rows, pos].to(ACT_DTYPES[cfg.act_dtype]).cpu().numpy(),
        dropped_outliers=dropped,
    )


def activation_extractor(lm: LoadedLM, cfg: ExtractionConfig, *, layer: int,
                         site: str = "resid_post") -> Callable[[Sequence[tuple[int, str]]], np.ndarray]:
    """A function from documents (doc_id, text) to their kept tokens' activations [n, d]: what an
    ``ActivationStream`` runs the LM with."""
    module = hook_module(lm.model, layer, site)
    masked_ids = _masked_ids(lm.tokenizer).to(lm.device)

    @torch.inference_mode()
    def extract(chunk: Sequence[tuple[int, str]]) -> np.ndarray:
        return extract_batch(lm, module, chunk, cfg, masked_ids).act

    return extract
