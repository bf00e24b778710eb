"""The random-weights control of a model (after Heap et al. 2025): the same config and tokenizer, and
every weight drawn afresh by the family's own initialiser, saved as an ordinary Hugging Face directory, so
the whole pipeline runs on it as on any model."""

from __future__ import annotations

import contextlib
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


def save_random_init(config, seed: int, out_dir: Path, dtype: str = "float32", trust_remote_code: bool = False):
    """A causal LM of ``config`` with weights drawn by its family's ``_init_weights`` (the initialiser its
    authors train from) under ``seed``, on the CPU in float32 (the same draw whatever ``dtype``), then cast to
    ``dtype`` and saved to ``out_dir``; returned in eval mode. The global RNG is left as it was."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        try:
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=trust_remote_code,
                                                     attn_implementation=attn_implementation(config))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"model config {type(config).__name__}: cannot build its random-weights twin "
                                 f"({exc})") from exc
    model.to(DTYPES[dtype])
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    return model.eval().requires_grad_(False)


def save_random_twin(source: str, seed: int, out_dir: Path, *, revision: str | None = None, dtype: str = "float32",
                     trust_remote_code: bool = False) -> None:
    """The random-weights twin of the model at ``source`` (a hub id or a local directory): its config, tokenizer
    and generation config (the stop tokens steering generates up to), fresh weights (``save_random_init``),
    written to ``out_dir``. Only those files are read, never the weights."""
    from transformers import GenerationConfig

    config = load_config(source, revision, trust_remote_code)
    location = str(Path(source).expanduser()) if looks_like_path(source) else source
    try:
        tokenizer = load_tokenizer(location, revision, trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model source {source!r}: cannot load its tokenizer for the control twin "
                             f"({exc})") from exc
    save_random_init(config, seed, out_dir, dtype, trust_remote_code)
    tokenizer.save_pretrained(out_dir)
    with contextlib.suppress(OSError):  # a source without generation_config.json: its twin has none either
        GenerationConfig.from_pretrained(location, revision=revision).save_pretrained(out_dir)
