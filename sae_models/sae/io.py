"""Checkpoints in the SAELens layout: ``cfg.json`` + ``sae_weights.safetensors``.

``sae_lens.SAE.load_from_disk(dir)`` loads what ``save_sae`` writes (standard / topk / jumprelu / gated;
BatchTopK as jumprelu with its global threshold; baselines and the tied SAE as standard). ``load_sae``
reads our own directories back exactly, and SAELens-format directories written elsewhere (e.g. a
downloaded Gemma Scope SAE) as external SAEs usable for inference and evaluation.
"""

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sae_models.sae.base import SAEConfig, SparseAutoencoder
from sae_models.sae.registry import build_sae

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
STATE_FILE = "sae_state.safetensors"  # our extra tensors (e.g. JumpReLU log-threshold), not for SAELens
SAE_LENS_VERSION = "6.54.12"
_EXTERNAL = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated"}


class SAECheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or does not match its config; the message names the file."""


def save_sae(sae: SparseAutoencoder, directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = {
        "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"sae_lens_version": SAE_LENS_VERSION, **sae.cfg.metadata},
        "architecture": sae.sae_lens_architecture, **sae.sae_lens_extra_cfg(),
        "sae_lake": sae.cfg.to_dict(),
    }
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in sae.sae_lens_tensors().items()}
    save_file(tensors, directory / WEIGHTS_FILE)
    save_file({k: v.detach().contiguous().cpu() for k, v in sae.state_dict().items()}, directory / STATE_FILE)
    (directory / CFG_FILE).write_text(json.dumps(cfg, indent=2))


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise SAECheckpointError(f"{path}: missing")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise SAECheckpointError(f"{path}: unreadable or truncated ({exc})") from exc


def _read_cfg(directory: Path) -> dict:
    path = directory / CFG_FILE
    if not path.is_file():
        raise SAECheckpointError(f"{path}: missing (not an SAE directory)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SAECheckpointError(f"{path}: not valid JSON ({exc})") from exc


def load_sae(directory: Path) -> SparseAutoencoder:
    """Our checkpoint, or an external SAELens-format directory."""
    directory = Path(directory)
    raw = _read_cfg(directory)
    if "sae_lake" in raw:
        sae = build_sae(SAEConfig(**raw["sae_lake"]))
        state = _read_tensors(directory / STATE_FILE)
    else:
        sae, state = _external(raw, _read_tensors(directory / WEIGHTS_FILE), directory)
    try:
        sae.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1:2] or [str(exc)]
        raise SAECheckpointError(f"{directory}: weights do not match {CFG_FILE} ({first[0].strip()})") from None
    return sae.eval()


def _external(raw: dict, tensors: dict[str, torch.Tensor], directory: Path):
    arch = raw.get("architecture", "standard")
    if arch not in _EXTERNAL:
        raise SAECheckpointError(f"{directory / CFG_FILE}: SAELens architecture {arch!r} is not supported")
    ours = _EXTERNAL[arch]
    cfg = SAEConfig(architecture=ours, d_in=raw["d_in"], d_sae=raw["d_sae"], k=raw.get("k"),
                    sparsity_coefficient=1.0, target_l0=1.0,
                    metadata={"external": str(directory), **raw.get("metadata", {})})
    sae = build_sae(cfg)
    state = dict(tensors)
    if ours == "jumprelu" and "threshold" in state:
        state["log_threshold"] = state.pop("threshold").clamp_min(1e-12).log()
    return sae, state
