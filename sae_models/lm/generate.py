"""Batched generation whose every row samples from its own seeded random stream.

AxBench samples at temperature 1.0. With one shared generator a row's sample depends on where it sits in the
batch and on how many rows came before it, so a result moves with the batch size (SAEBench warns of this).
Here each row draws its Gumbel noise from a counter-based generator keyed by (row seed, step, token id):
argmax(logits / T + Gumbel) is an exact sample from softmax(logits / T) (the Gumbel-max trick), and the noise
a row sees is the same whatever batch, batch size, row order or device it runs on. ``temperature=0`` is
greedy decoding.

The decoding loop is transformers' ``generate`` (KV cache on, prompts left padded, so every row's last
prompt token sits at position -1); an edit (e.g. ``intervene.add_vectors``) installed at a hook point acts
on the prompt and on every generated token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from sae_models.lm.hooks import edit_output
from sae_models.lm.intervene import Edit, tokenize
from sae_models.lm.loading import LoadedLM

_GOLDEN = -7046029254386353131  # 0x9E3779B97F4A7C15 as a signed 64-bit integer
_MIX1 = -4658895280553007687  # 0xBF58476D1CE4E5B9
_MIX2 = -7723592293110705685  # 0x94D049BB133111EB


def row_seed(*parts: object) -> int:
    """A stable 63-bit seed from any values (model, SAE, latent, factor, instruction, ...)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _signed(value: int) -> int:
    """``value`` modulo 2**64, as the signed 64-bit integer torch stores."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 values (torch's ``>>`` is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _splitmix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (wrapping arithmetic): a bijective 64-bit mix."""
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    return x ^ _shr(x, 31)


def counter_uniform(seeds: torch.Tensor, step: int, n: int) -> torch.Tensor:
    """Uniform noise in (0, 1), [len(seeds), n] float32: entry (r, j) is a pure function of
    (seeds[r], step, j), so a row's noise does not depend on the other rows."""
    row = _splitmix(seeds.to(torch.int64) + _signed((step + 1) * _GOLDEN))
    cols = torch.arange(n, dtype=torch.int64, device=seeds.device) * _GOLDEN
    bits = _shr(_splitmix(row[:, None] ^ cols[None, :]), 40)  # the top 24 bits
    return (bits.to(torch.float32) + 0.5) / float(1 << 24)


class RowSampler:
    """A logits processor: scores / T plus each row's own Gumbel noise, so that transformers' greedy argmax
    draws a sample. ``prompt_width`` is the padded prompt length, which turns a sequence length into the
    number of tokens generated so far (the same for a row in any batch)."""

    def __init__(self, seeds: Sequence[int], temperature: float, prompt_width: int, device: torch.device):
        self.seeds = torch.tensor(list(seeds), dtype=torch.int64, device=device)
        self.temperature, self.prompt_width = temperature, prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        noise = counter_uniform(self.seeds, input_ids.shape[1] - self.prompt_width, scores.shape[-1])
        return scores.float() / self.temperature - torch.log(-torch.log(noise))


@dataclass(frozen=True)
class Generated:
    """One row's continuation: its token ids (up to and including the end-of-sequence token) and text."""

    token_ids: tuple[int, ...]
    text: str

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def _trim(ids: list[int], eos: set[int], pad: int | None) -> list[int]:
    for j, tok in enumerate(ids):
        if tok in eos:
            return ids[: j + 1]
    while ids and ids[-1] == pad and pad not in eos:
        ids = ids[:-1]
    return ids


def _eos_ids(lm: LoadedLM) -> set[int]:
    eos = getattr(lm.model.generation_config, "eos_token_id", None) or lm.tokenizer.eos_token_id
    return set(eos) if isinstance(eos, list) else {eos}


def generate_batch(lm: LoadedLM, prompts: Sequence[str], seeds: Sequence[int], max_new_tokens: int,
                   temperature: float = 1.0, module: torch.nn.Module | None = None, edit: Edit | None = None,
                   ) -> list[Generated]:
    """Continue every prompt in one ``generate`` call: sampled per row at ``temperature`` (0: greedy), with
    ``edit`` applied to ``module``'s output at every position when given."""
    from transformers import GenerationConfig, LogitsProcessorList

    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    enc = tokenize(lm, prompts, padding_side="left")
    width = enc["input_ids"].shape[1]
    eos = _eos_ids(lm)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True,
                              pad_token_id=lm.tokenizer.pad_token_id, eos_token_id=sorted(eos))
    processors = LogitsProcessorList([RowSampler(seeds, temperature, width, lm.device)] if temperature > 0 else [])
    with edit_output(module, edit) if edit is not None else nullcontext(), torch.inference_mode():
        out = lm.model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                generation_config=config, logits_processor=processors)
    rows = [_trim(ids, eos, lm.tokenizer.pad_token_id) for ids in out[:, width:].tolist()]
    texts = lm.tokenizer.batch_decode(rows, skip_special_tokens=True)
    return [Generated(tuple(ids), text.strip()) for ids, text in zip(rows, texts, strict=True)]
