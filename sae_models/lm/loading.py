"""Load any causal LM, by hub id or local directory, through the Auto classes.

A toy model saved by ``sae_models.toyworld`` and ``google/gemma-2-2b`` take the same path; failures
(missing directory, hub unreachable, unknown architecture) become one ``ModelLoadError`` line that
names the source.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded; the message names the source and the cause."""


@dataclass
class LoadedLM:
    model: torch.nn.Module
    tokenizer: object
    source: str
    family: str
    n_layers: int
    d_model: int

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def looks_like_path(source: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else (``./x``, ``/x``, ``~/x``, ``a/b/c``, an existing
    folder) is a local directory."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or Path(source).expanduser().exists()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_tokenizer(source: str, revision: str | None = None, trust_remote_code: bool = False):
    """``AutoTokenizer``, except that a local ``tokenizer_config.json`` naming ``TokenizersBackend`` is
    honoured as written (transformers otherwise swaps in a model-type tokenizer, e.g. Qwen2's)."""
    from transformers import AutoTokenizer, TokenizersBackend

    cfg_file = Path(source).expanduser() / "tokenizer_config.json"
    if cfg_file.is_file() and json.loads(cfg_file.read_text()).get("tokenizer_class") == "TokenizersBackend":
        return TokenizersBackend.from_pretrained(str(cfg_file.parent))
    return AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)


def _config_int(config, *names: str) -> int:
    for cfg in (config, getattr(config, "text_config", None)):
        for name in names:
            if cfg is not None and isinstance(getattr(cfg, name, None), int):
                return getattr(cfg, name)
    raise ModelLoadError(f"model config {type(config).__name__} has none of {names}")


def load_config(source: str, revision: str | None = None, trust_remote_code: bool = False):
    """The model's config alone (cheap): used to validate a layer before loading weights."""
    from transformers import AutoConfig

    _check_source(source)
    try:
        return AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_describe_failure(source, exc)) from exc


def n_layers_of(config) -> int:
    return _config_int(config, "num_hidden_layers", "n_layer", "num_layers")


def d_model_of(config) -> int:
    return _config_int(config, "hidden_size", "n_embd", "d_model")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _check_source(source: str) -> None:
    """A local directory must exist and hold a tokenizer: without one every stage after the config would fail,
    each with transformers' own message."""
    if not looks_like_path(source):
        return
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"model source {source!r}: no such directory")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"model source {source!r}: no tokenizer in this directory (none of "
                             f"{', '.join(TOKENIZER_FILES)})")


def _describe_failure(source: str, exc: BaseException) -> str:
    if "contains custom code" in str(exc):
        return (f"model source {source!r} ships its own model code, which runs only with trust_remote_code = true "
                "on its [[models]] entry in lake.toml (read that code first)")
    if looks_like_path(source):
        return f"model source {source!r}: cannot load from this directory ({_first_line(exc)})"
    return (f"model source {source!r}: not a local directory, and not loadable from the Hugging Face hub "
            f"or its local cache (offline or unknown id?): {_first_line(exc)}")


def attn_implementation(config) -> str | None:
    """Eager attention for Gemma-2 (its logit soft-capping runs only there in transformers 5), else the
    default."""
    return "eager" if config.model_type.startswith("gemma2") else None


def load_lm(
    source: str,
    *,
    revision: str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    trust_remote_code: bool = False,
) -> LoadedLM:
    """Load a causal LM and its tokenizer for inference (eval mode, no gradients)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if dtype not in DTYPES:
        raise ModelLoadError(f"model source {source!r}: dtype {dtype!r} is not one of {sorted(DTYPES)}")
    config = load_config(source, revision, trust_remote_code)
    try:
        tokenizer = load_tokenizer(str(Path(source).expanduser()) if looks_like_path(source) else source,
                                   revision, trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            source, revision=revision, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code,
            attn_implementation=attn_implementation(config),
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_describe_failure(source, exc)) from exc
    model.to(device).eval().requires_grad_(False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return LoadedLM(model, tokenizer, source, config.model_type, n_layers_of(config), d_model_of(config))


def source_stamp(source: str) -> str:
    """For a local directory, the latest modification time of its files (so a model saved again over the same
    path is not mistaken for the old one); empty for hub ids, whose revision names the weights."""
    if not looks_like_path(source):
        return ""
    files = [f for f in Path(source).expanduser().glob("*") if f.is_file()]
    return str(max((f.stat().st_mtime_ns for f in files), default=0))


@functools.lru_cache(maxsize=1)
def _shared(source: str, revision: str | None, dtype: str, device: str, trust_remote_code: bool,
            stamp: str) -> LoadedLM:
    return load_lm(source, revision=revision, dtype=dtype, device=device, trust_remote_code=trust_remote_code)


def shared_lm(source: str, revision: str | None = None, dtype: str = "float32", device: str = "cpu",
              trust_remote_code: bool = False) -> LoadedLM:
    """``load_lm``, once per process: the per-SAE steps of one model (metrics, steering, selection) that run in
    the same process share one copy. Only the latest model is kept, so a process that moves on to the next
    model frees the previous one. Callers must leave it as they found it (edits are context managers)."""
    return _shared(source, revision, dtype, device, trust_remote_code, source_stamp(source))


def shared_lm_loads() -> int:
    """How many times ``shared_lm`` has loaded a model in this process."""
    return _shared.cache_info().misses
