"""Hook points and the one intervention mechanism that capture, steering, DTC and patching share.

A hook point is (layer, site):

- ``resid_post``: the residual stream after block ``layer`` (the block's output);
- ``mlp_out`` / ``attn_out``: what the MLP / attention sublayer adds to the residual stream (for Gemma-2
  that is after its post-sublayer norm, since that is the tensor summed into the stream).

``edit_output(module, fn)`` replaces a module's output with ``fn(output)`` for the duration of a ``with``
block; reading an activation is an edit that records and returns its input unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

SITES = ("resid_post", "mlp_out", "attn_out")

# Sublayer whose output is added to the residual stream, per model family.
_SUBLAYERS: dict[str, dict[str, str]] = {
    "gemma2": {"mlp_out": "post_feedforward_layernorm", "attn_out": "post_attention_layernorm"},
    "gemma3": {"mlp_out": "post_feedforward_layernorm", "attn_out": "post_attention_layernorm"},
    "gpt2": {"mlp_out": "mlp", "attn_out": "attn"},
}
_LLAMA_LIKE = {"mlp_out": "mlp", "attn_out": "self_attn"}  # llama, qwen2, qwen3, mistral, gemma, ...
_LAYER_LISTS = ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers")


class HookPointError(ValueError):
    """A hook point that does not exist for this model."""


def sae_lens_hook_name(layer: int, site: str) -> str:
    """The TransformerLens / SAELens name of a hook point, e.g. ``blocks.12.hook_resid_post``."""
    return f"blocks.{layer}.hook_{site}"


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    for path in _LAYER_LISTS:
        obj = model
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    raise HookPointError(f"{type(model).__name__}: no decoder layer list found (looked for {_LAYER_LISTS})")


def hook_module(model: torch.nn.Module, layer: int, site: str) -> torch.nn.Module:
    """The module whose output is the activation at (layer, site)."""
    if site not in SITES:
        raise HookPointError(f"hook site {site!r}: expected one of {SITES}")
    layers = decoder_layers(model)
    if not 0 <= layer < len(layers):
        raise HookPointError(f"layer {layer} is out of range: {type(model).__name__} has {len(layers)} layers "
                             f"(0..{len(layers) - 1})")
    block = layers[layer]
    if site == "resid_post":
        return block
    family = getattr(model.config, "model_type", "")
    name = _SUBLAYERS.get(family, _LLAMA_LIKE)[site]
    if not hasattr(block, name):
        raise HookPointError(f"{site} is not supported for model family {family!r} (no {name!r} in its blocks)")
    return getattr(block, name)


def _primary(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _with_primary(output, tensor: torch.Tensor):
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


@contextmanager
def edit_output(module: torch.nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Within the block, ``module``'s output hidden states [batch, pos, d] become ``fn(hidden)``."""

    def hook(_module, _inputs, output):
        return _with_primary(output, fn(_primary(output)))

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class StopForward(Exception):
    """Raised from a hook to end a forward pass once the wanted activation is in hand."""


@contextmanager
def capture(module: torch.nn.Module, stop: bool = False) -> Iterator[list[torch.Tensor]]:
    """Record ``module``'s output into the yielded list; with ``stop``, end the forward pass right there,
    so the layers above are never run (the caller catches ``StopForward``)."""
    store: list[torch.Tensor] = []

    def record(hidden: torch.Tensor) -> torch.Tensor:
        store.append(hidden)
        if stop:
            raise StopForward
        return hidden

    with edit_output(module, record):
        yield store
