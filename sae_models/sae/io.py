"""Checkpoints in the SAELens layout: ``cfg.json`` + ``sae_weights.safetensors``.

``sae_lens.SAE.load_from_disk(dir)`` loads what ``save_sae`` writes (standard / topk / jumprelu / gated;
BatchTopK as jumprelu with its global threshold; baselines and the tied SAE as standard). The weights are
stored once, in the SAELens file; ``sae_state.safetensors`` holds only what SAELens does not (e.g. JumpReLU's
log-threshold; the tied SAE's raw decoder, whose normalised copy is what SAELens gets).

``load_sae`` reads our own directories back exactly, SAELens-format directories written elsewhere as external
SAEs, and Gemma Scope's, sparsify's and dictionary_learning's own folders (``sae_models.sae.formats``), their
config flags honoured: with ``apply_b_dec_to_input: false`` the decoder bias is folded out of the encoder's input.
A SAELens config of any version is read (``sae_models.sae.formats.saelens``: pre-6.0 configs, the activation-norm
factor, a legacy codes scale); flags whose effect cannot be folded into the weights (a per-input normalisation;
TopK's ``rescale_acts_by_decoder_norm``) are one clear error rather than wrong codes.
"""

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sae_models.sae.base import SAECheckpointError, SAEConfig, SparseAutoencoder
from sae_models.sae.formats import dictionary_learning, gemma_scope, saelens, sparsify
from sae_models.sae.registry import build_sae

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
STATE_FILE = "sae_state.safetensors"  # our tensors that the SAELens file lacks (e.g. JumpReLU log-threshold)
SUPPORTED_FLAGS = {"normalize_activations": ("none", None), "reshape_activations": ("none", None),
                   "rescale_acts_by_decoder_norm": (False, None)}
SAE_LENS_VERSION = "6.54.12"
_EXTERNAL = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated"}
# Other libraries' folders, by the file that holds their weights: each reader gives a SAELens config and tensors.
FOREIGN_FORMATS = ((gemma_scope.PARAMS_FILE, gemma_scope.read_gemma_scope),
                   (sparsify.WEIGHTS_FILE, sparsify.read_sparsify),
                   (dictionary_learning.WEIGHTS_FILE, dictionary_learning.read_dictionary_learning))


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
    state = {k: v.detach().contiguous().cpu() for k, v in sae.state_dict().items()}
    save_file(tensors, directory / WEIGHTS_FILE)
    save_file({k: v for k, v in state.items() if not _same(tensors.get(k), v)}, directory / STATE_FILE)
    (directory / CFG_FILE).write_text(json.dumps(cfg, indent=2))


def _same(stored: torch.Tensor | None, tensor: torch.Tensor) -> bool:
    return stored is not None and stored.dtype == tensor.dtype and torch.equal(stored, tensor)


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


def load_sae(directory: Path, norm_scaling_factor: float | None = None) -> SparseAutoencoder:
    """Our checkpoint, an external SAELens-format directory, or a Gemma Scope, sparsify or dictionary_learning
    folder (``FOREIGN_FORMATS``). ``norm_scaling_factor``: the activation-norm factor of a SAELens SAE trained
    with ``normalize_activations: expected_average_only_in`` whose folder has no ``activation_scaler.json``."""
    directory = Path(directory)
    if not (directory / WEIGHTS_FILE).is_file():
        for weights, read in FOREIGN_FORMATS:
            if (directory / weights).is_file():
                if norm_scaling_factor is not None:
                    raise saelens.unused_factor(directory)
                return _loaded(directory, *_external(*read(directory), directory), config=weights)
    raw = _read_cfg(directory)
    if "sae_lake" in raw:
        sae = build_sae(SAEConfig(**raw["sae_lake"]))
        weights, extra = _read_tensors(directory / WEIGHTS_FILE), _read_tensors(directory / STATE_FILE)
        state = {k: extra[k] if k in extra else weights.get(k) for k in sae.state_dict()}
        state = {k: v for k, v in state.items() if v is not None}
    else:
        sae, state = _external(*_saelens_directory(raw, directory, norm_scaling_factor), directory)
    return _loaded(directory, sae, state)


def _loaded(directory: Path, sae: SparseAutoencoder, state: dict[str, torch.Tensor], config: str = CFG_FILE
            ) -> SparseAutoencoder:
    try:
        sae.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1:2] or [str(exc)]
        raise SAECheckpointError(f"{directory}: weights do not match {config} ({first[0].strip()})") from None
    return sae.eval()


def _saelens_directory(raw: dict, directory: Path, norm_scaling_factor: float | None
                      ) -> tuple[dict, dict[str, torch.Tensor]]:
    """A SAELens directory's config in SAELens 6's terms and its tensors, the activation-norm factor and a legacy
    codes scale folded in."""
    raw = saelens.modern_config(raw, directory / CFG_FILE)
    tensors = {k: v.float() for k, v in _read_tensors(directory / WEIGHTS_FILE).items()}  # folds in float32
    tensors = saelens.fold_legacy_codes_scale(raw, tensors, directory)
    if raw.get("normalize_activations") == saelens.SCALED:
        tensors = saelens.fold_scaling(tensors, saelens.scaling_factor(directory, norm_scaling_factor))
        raw = {**raw, "normalize_activations": "none"}
    elif norm_scaling_factor is not None:
        raise saelens.unused_factor(directory)
    return raw, tensors


def _external(raw: dict, tensors: dict[str, torch.Tensor], directory: Path):
    _check_flags(raw, directory)
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
    if not raw.get("apply_b_dec_to_input", True):
        _fold_b_dec_out_of_input(state, ours)
    return sae, state


def _check_flags(raw: dict, directory: Path) -> None:
    for flag, supported in SUPPORTED_FLAGS.items():
        if raw.get(flag) not in supported:
            also = f", {saelens.SCALED!r} with its factor" if flag == "normalize_activations" else ""
            raise SAECheckpointError(f"{directory / CFG_FILE}: {flag} {raw[flag]!r} is not supported "
                                     f"(supported: {supported[0]!r}{also})")


def _fold_b_dec_out_of_input(state: dict[str, torch.Tensor], architecture: str) -> None:
    """Our encoders read x - b_dec; an SAE trained with ``apply_b_dec_to_input: false`` reads x. Adding
    b_dec @ W_enc to the encoder biases makes ours compute exactly its pre-activations."""
    shift = state["b_dec"] @ state["W_enc"]
    if architecture == "gated":
        state["b_gate"] = state["b_gate"] + shift
        state["b_mag"] = state["b_mag"] + state["r_mag"].exp() * shift
    else:
        state["b_enc"] = state["b_enc"] + shift
