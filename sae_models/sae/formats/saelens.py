"""SAELens directories written by any SAELens version: what their config says that the weights do not carry.

- **Configs before SAELens 6.0** name the activation ``activation_fn_str`` (``relu``, or ``topk`` with its k in
  ``activation_fn_kwargs``) rather than an ``architecture``, and ``normalize_activations`` as a bool. They are
  read as SAELens 6 reads them (a config without a version is one of them).
- **``normalize_activations: expected_average_only_in``**: the SAE was trained on activations multiplied by one
  factor (sqrt(d_in) over their mean norm), which SAELens keeps outside cfg.json, in ``activation_scaler.json``
  beside it, or in its pretrained-SAE directory. The factor is folded into the weights as SAELens folds it
  (``W_enc * s``, ``W_dec / s``, ``b_dec / s``), so the SAE reads and writes the model's own activations: from
  the folder's ``activation_scaler.json``, else the configured factor, else one clear error naming both.
- **A legacy ``scaling_factor`` tensor** (``finetuning_scaling_factor``: SAELens before 6.0 multiplied the codes by
  it before decoding) is folded into ``W_dec``; all ones, it is dropped.

Normalisations that depend on each input (``layer_norm``, ``constant_norm_rescale``) or on a whitening matrix
cannot be folded into a linear encoder and decoder: one clear error.
"""

import json
from pathlib import Path

import torch

from sae_models.sae.base import SAECheckpointError

SCALER_FILE = "activation_scaler.json"
SCALED = "expected_average_only_in"


def _major(version: object) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def modern_config(raw: dict, source: Path) -> dict:
    """A pre-6.0 config (read from ``source``) in SAELens 6's terms; a 6.x config unchanged."""
    version = raw.get("sae_lens_version") or raw.get("metadata", {}).get("sae_lens_version")
    if _major(version) >= 6:
        return raw
    cfg = {("activation_fn" if k == "activation_fn_str" else k): v for k, v in raw.items()}
    activation = cfg.get("activation_fn", "relu")
    if activation == "topk":
        k = (cfg.get("activation_fn_kwargs") or {}).get("k")
        if k is None:
            raise SAECheckpointError(f"{source}: activation_fn_str 'topk' without activation_fn_kwargs.k")
        cfg.update(architecture="topk", k=k)
    elif activation != "relu":
        raise SAECheckpointError(f"{source}: activation_fn_str {activation!r} is not supported (supported: "
                                 "'relu', 'topk')")
    cfg.setdefault("architecture", "standard")
    if isinstance(cfg.get("normalize_activations"), bool):
        cfg["normalize_activations"] = SCALED if cfg["normalize_activations"] else "none"
    return cfg


def scaling_factor(directory: Path, configured: float | None) -> float:
    """The activation-norm factor of an ``expected_average_only_in`` SAE."""
    path = Path(directory) / SCALER_FILE
    if path.is_file() and configured is not None:
        raise SAECheckpointError(f"{path} gives the activation-norm factor: norm_scaling_factor in [[external_saes]] "
                                 "would be ignored; leave it out")
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SAECheckpointError(f"{path}: not valid JSON ({exc})") from None
        if saved.get("has_whitening"):
            raise SAECheckpointError(f"{path}: a whitening transform is not supported")
        if isinstance(saved.get("scaling_factor"), int | float) and saved["scaling_factor"] > 0:
            return float(saved["scaling_factor"])
        raise SAECheckpointError(f"{path}: no positive scaling_factor")
    if configured is not None:
        return configured
    raise SAECheckpointError(f"{Path(directory) / 'cfg.json'}: normalize_activations {SCALED!r} needs its factor: no "
                             f"{SCALER_FILE} beside it, and no norm_scaling_factor given for it in [[external_saes]]")


def unused_factor(directory: Path) -> SAECheckpointError:
    """The error for a configured factor that the SAE in ``directory`` has no use for."""
    return SAECheckpointError(f"{directory}: norm_scaling_factor is set in [[external_saes]], but only a SAELens SAE "
                              f"trained with normalize_activations {SCALED!r} uses one; leave it out")


def fold_scaling(tensors: dict[str, torch.Tensor], factor: float) -> dict[str, torch.Tensor]:
    """An SAE trained on activations x factor, as one that reads and writes the activations themselves."""
    return {**tensors, "W_enc": tensors["W_enc"] * factor, "W_dec": tensors["W_dec"] / factor,
            "b_dec": tensors["b_dec"] / factor}


def fold_legacy_codes_scale(raw: dict, tensors: dict[str, torch.Tensor], directory: Path) -> dict[str, torch.Tensor]:
    """Without its ``scaling_factor`` tensor: folded into ``W_dec`` (codes x scaling_factor decoded), or dropped
    when all ones."""
    if "scaling_factor" not in tensors:
        return tensors
    rest = {k: v for k, v in tensors.items() if k != "scaling_factor"}
    scale = tensors["scaling_factor"]
    if torch.allclose(scale, torch.ones_like(scale)):
        return rest
    if not raw.get("finetuning_scaling_factor"):
        raise SAECheckpointError(f"{Path(directory) / 'cfg.json'}: a scaling_factor tensor other than 1 but "
                                 "finetuning_scaling_factor is not true: which one holds is unknown")
    return {**rest, "W_dec": rest["W_dec"] * scale[:, None]}
