"""sae_models: the science of sae-lake (toy world, language models, SAEs, evaluations).

Plain torch / transformers / numpy; usable from a notebook without any orchestration.
"""
