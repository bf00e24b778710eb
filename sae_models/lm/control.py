"""The random-weights control of a model (SPEC §8, after Heap et al. 2025): the same config and tokenizer, and
every weight drawn afresh by the family's own initialiser, saved as an ordinary Hugging Face directory, so
the whole pipeline runs on it as on any model."""

from __future__ import annotations

from pathlib import Path

import torch

from sae_models.lm.loading import (
    DTYPES,
    ModelLoadError,
    attn_implementation,
    load_config,
    load_tokenizer,
    looks_like_path,
)


def save_random_init(config, seed: int, out_dir: Path, dtype: str = "float32"):
    """A causal LM of ``config`` with weights drawn by its family's ``_init_weights`` (the initialiser its
    authors train from) under ``seed``, saved to ``out_dir``; returned in eval mode. The global RNG is left as
    it was."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=DTYPES[dtype],
                                                 attn_implementation=attn_implementation(config))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    return model.eval().requires_grad_(False)


def save_random_twin(source: str, seed: int, out_dir: Path, *, revision: str | None = None, dtype: str = "float32",
                     trust_remote_code: bool = False) -> None:
    """The random-weights twin of the model at ``source`` (a hub id or a local directory): its config and
    tokenizer, fresh weights (``save_random_init``), written to ``out_dir``. Only the config and the tokenizer
    are read, never the weights."""
    config = load_config(source, revision, trust_remote_code)
    try:
        tokenizer = load_tokenizer(str(Path(source).expanduser()) if looks_like_path(source) else source, revision,
                                   trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model source {source!r}: cannot load its tokenizer for the control twin "
                             f"({exc})") from exc
    save_random_init(config, seed, out_dir, dtype)
    tokenizer.save_pretrained(out_dir)
