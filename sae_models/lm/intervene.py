"""The intervention module: batched tokenization with the padding side of each call, the edits that core
metrics, steering, DTC and patching apply at a hook point, and the logit lens.

An edit is a function hidden [batch, pos, d] -> hidden, installed with ``hooks.edit_output``:

- ``splice``: replace the activation by a function of it (an SAE's reconstruction, zeros) at every position
  from ``start`` on (1 skips BOS);
- ``add_vectors``: add one vector per row, at every position or at the positions of a mask (steering adds
  factor * m_f * d_f at every position, prompt and generated tokens alike; DTC at the last one);
- ``set_codes``: encode with an SAE, change the codes, decode, and keep the reconstruction error, so that an
  unchanged code leaves the activation exactly as it was (DTC, output score, patching).

``resume_from`` runs only the blocks above a layer, from given residual-stream states: many edited copies of
one prompt share the prefix computed once (patching).

Left padding (``padding_side="left"``) puts every row's last token at position -1, which generation and
last-position edits need; right padding keeps positions aligned with the unpadded text (extraction, metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from sae_models.lm.hooks import decoder_layers
from sae_models.lm.loading import LoadedLM

Edit = Callable[[torch.Tensor], torch.Tensor]

# The final norm before the unembedding, per family (the attribute path from the CausalLM).
_FINAL_NORMS = {"gpt2": "transformer.ln_f", "gpt_neox": "gpt_neox.final_layer_norm"}
_DEFAULT_FINAL_NORM = "model.norm"  # llama, qwen2, gemma2, mistral, ...


def tokenize(lm: LoadedLM, texts: Sequence[str], padding_side: str = "right",
             max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Token ids, attention mask and position ids on the model's device, padded on ``padding_side`` for this
    call only. Position ids count real tokens, so a left-padded row sees the positions an unpadded one would
    (absolute position embeddings, e.g. GPT-2, need that; rotary ones do not care)."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    enc = lm.tokenizer(list(texts), return_tensors="pt", padding=True, padding_side=padding_side,
                       truncation=max_length is not None, max_length=max_length)
    mask = enc["attention_mask"].to(lm.device)
    return {"input_ids": enc["input_ids"].to(lm.device), "attention_mask": mask,
            "position_ids": (mask.long().cumsum(-1) - 1).clamp_min(0)}


def splice(replace: Edit, start: int = 1) -> Edit:
    """Replace the activation by ``replace(activation)`` at positions ``start`` onwards (1: all but BOS)."""

    def edit(hidden: torch.Tensor) -> torch.Tensor:
        out = hidden.clone()
        out[:, start:] = replace(hidden[:, start:]).to(hidden.dtype)
        return out

    return edit


def _at(positions: torch.Tensor | None, hidden: torch.Tensor) -> torch.Tensor:
    """A [batch, pos, 1] multiplier: 1 at the chosen positions (every position when ``positions`` is None)."""
    if positions is None:
        return torch.ones(*hidden.shape[:2], 1, dtype=hidden.dtype, device=hidden.device)
    if positions.shape != hidden.shape[:2]:
        raise ValueError(f"positions mask {tuple(positions.shape)} does not match the hidden states "
                         f"{tuple(hidden.shape[:2])}")
    return positions.to(hidden.dtype)[..., None]


def add_vectors(vectors: torch.Tensor, positions: torch.Tensor | None = None) -> Edit:
    """h <- h + vectors[row] at the chosen positions (a [batch, pos] bool mask over the prompt; None: all).
    With a KV cache each later generation step sees one new position: None steers it too (AxBench's
    convention), a prompt mask leaves it alone."""

    def edit(hidden: torch.Tensor) -> torch.Tensor:
        if positions is not None and hidden.shape[1] == 1 and positions.shape[1] != 1:
            return hidden  # a generation step after the prompt: the masked positions are behind us
        return hidden + _at(positions, hidden) * vectors[:, None, :].to(hidden.dtype)

    return edit


def last_position(attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch, pos] mask of each row's last real token (left or right padded)."""
    last = attention_mask.shape[1] - 1 - attention_mask.flip(1).long().argmax(1)
    mask = torch.zeros_like(attention_mask, dtype=torch.bool)
    mask[torch.arange(len(mask)), last] = True
    return mask


def set_codes(sae, update: Callable[[torch.Tensor], torch.Tensor], positions: torch.Tensor | None = None) -> Edit:
    """At the chosen positions: codes = sae.encode(h); h <- sae.decode(update(codes)) + (h - sae.decode(codes)).
    The reconstruction error is kept, so only the change of the codes reaches the model."""

    def edit(hidden: torch.Tensor) -> torch.Tensor:
        flat = hidden.reshape(-1, hidden.shape[-1]).float()
        codes = sae.encode(flat)
        delta = (sae.decode(update(codes)) - sae.decode(codes)).reshape(hidden.shape)
        return hidden + _at(positions, hidden) * delta.to(hidden.dtype)

    return edit


@contextmanager
def resume_from(model: torch.nn.Module, layer: int, hidden: torch.Tensor) -> Iterator[None]:
    """Within the block, a forward pass skips blocks 0..``layer`` and continues from ``hidden`` [batch, pos, d], the
    residual stream after block ``layer`` (``resid_post``). The input ids then only give the batch its shape,
    attention mask and positions; the embedding still runs (cheap), no block below ``layer + 1`` does. Blocks
    return their hidden states as one tensor (transformers >= 5)."""
    blocks = decoder_layers(model)
    if not 0 <= layer < len(blocks):
        raise ValueError(f"layer {layer} is out of range ({len(blocks)} blocks)")

    def skipped(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states

    def resumed(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden.to(hidden_states.dtype)

    saved = [blocks[i].__dict__.get("forward") for i in range(layer + 1)]  # e.g. accelerate's offload wrappers
    for i in range(layer + 1):
        blocks[i].forward = resumed if i == layer else skipped
    try:
        yield
    finally:
        for i, forward in enumerate(saved):
            if forward is None:
                del blocks[i].forward  # the class's forward is back
            else:
                blocks[i].forward = forward


def final_norm(model: torch.nn.Module) -> torch.nn.Module:
    """The norm applied to the last residual stream before the unembedding."""
    path = _FINAL_NORMS.get(getattr(model.config, "model_type", ""), _DEFAULT_FINAL_NORM)
    obj = model
    for attr in path.split("."):
        obj = getattr(obj, attr, None)
    if not isinstance(obj, torch.nn.Module):
        raise ValueError(f"{type(model).__name__}: no final norm at {path!r}")
    return obj


def logit_lens(lm: LoadedLM, vectors: torch.Tensor) -> torch.Tensor:
    """Logits [n, vocab] of residual-stream vectors [n, d]: W_U LN_final(v), with the family's final logit
    soft-capping (Gemma-2). For the last layer's output this is the model's own next-token logits."""
    model = lm.model
    param = next(model.parameters())
    hidden = final_norm(model)(vectors.to(device=param.device, dtype=param.dtype))
    logits = model.get_output_embeddings()(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    return cap * torch.tanh(logits / cap) if cap else logits
