"""Causal LMs: loading by hub id or local directory, hook points, interventions, activation extraction."""

from sae_models._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "ExtractionConfig": "config",
    "ActivationBatch": "extract", "forward_to": "extract", "iter_activations": "extract",
    "activation_extractor": "extract",
    "SITES": "hooks", "HookPointError": "hooks", "capture": "hooks", "edit_output": "hooks", "hook_module": "hooks",
    "sae_lens_hook_name": "hooks",
    "LoadedLM": "loading", "ModelLoadError": "loading", "load_config": "loading", "load_lm": "loading",
    "load_tokenizer": "loading", "shared_lm": "loading", "shared_lm_loads": "loading",
})
