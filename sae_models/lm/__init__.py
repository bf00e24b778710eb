"""Causal LMs: loading by hub id or local directory, hook points, interventions, activation extraction."""

from sae_models.lm.extract import ActivationBatch, ExtractionConfig, forward_to, iter_activations
from sae_models.lm.hooks import SITES, HookPointError, capture, edit_output, hook_module, sae_lens_hook_name
from sae_models.lm.loading import LoadedLM, ModelLoadError, load_config, load_lm, load_tokenizer

__all__ = [
    "SITES",
    "ActivationBatch",
    "ExtractionConfig",
    "HookPointError",
    "LoadedLM",
    "ModelLoadError",
    "capture",
    "edit_output",
    "forward_to",
    "hook_module",
    "iter_activations",
    "load_config",
    "load_lm",
    "load_tokenizer",
    "sae_lens_hook_name",
]
