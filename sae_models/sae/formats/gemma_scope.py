"""Gemma Scope's own release format (Lieberum et al. 2024): a folder per SAE holding ``params.npz``.

The folders are named after what they hold, ``layer_12/width_16k/average_l0_82``, and the archive holds five
arrays: ``W_enc`` [d_in, d_sae], ``W_dec`` [d_sae, d_in], ``b_enc`` [d_sae], ``b_dec`` [d_in] and ``threshold``
[d_sae]. The encoder reads the activation itself, with no ``b_dec`` subtracted:

    pre = x @ W_enc + b_enc;  f = pre * 1[pre > threshold];  x_hat = f @ W_dec + b_dec

``read_gemma_scope`` turns a folder into what a SAELens directory of the same SAE holds (a JumpReLU config with
``apply_b_dec_to_input: false``, and its tensors), which ``load_sae`` then imports like any SAELens directory.
The width in the folder's name is checked against the arrays; the layer and the average L0 are kept as metadata.
"""

import re
from pathlib import Path

import numpy as np
import torch

from sae_models.sae.base import SAECheckpointError

PARAMS_FILE = "params.npz"
ARRAYS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")
# Gemma Scope's folder widths are powers of two named in thousands: width_16k = 16,384, width_131k = 131,072
WIDTHS = {"4k": 4096, "16k": 16384, "32k": 32768, "65k": 65536, "131k": 131072, "262k": 262144, "524k": 524288,
          "1m": 1048576}


def folder_facts(directory: Path) -> dict[str, int]:
    """The layer, width and average L0 that the folder names along ``directory`` state (those present)."""
    facts = {}
    for part in Path(directory).parts:
        if m := re.fullmatch(r"layer_(\d+)", part):
            facts["layer"] = int(m.group(1))
        elif m := re.fullmatch(r"width_(\d+[km]?)", part):
            name = m.group(1)
            if name in WIDTHS or name.isdigit():
                facts["width"] = WIDTHS.get(name) or int(name)
        elif m := re.fullmatch(r"average_l0_(\d+)", part):
            facts["average_l0"] = int(m.group(1))
    return facts


def _arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            return {("W_" + k[2:] if k.startswith("w_") else k): data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise SAECheckpointError(f"{path}: unreadable or truncated ({exc})") from None


def read_gemma_scope(directory: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The SAELens config and tensors of the Gemma Scope SAE in ``directory``."""
    path = Path(directory) / PARAMS_FILE
    arrays = _arrays(path)
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise SAECheckpointError(f"{path}: no array {', '.join(missing)} (a Gemma Scope SAE has {', '.join(ARRAYS)})")
    scaling = arrays.pop("scaling_factor", None)
    if scaling is not None and not np.allclose(scaling, 1.0):
        raise SAECheckpointError(f"{path}: a scaling_factor other than 1 is not supported (its effect is not in "
                                 "the other arrays)")
    d_in, d_sae = arrays["W_enc"].shape
    facts = folder_facts(directory)
    if facts.get("width", d_sae) != d_sae:
        raise SAECheckpointError(f"{path}: the folder says width {facts['width']} but W_enc has {d_sae} latents")
    raw = {"architecture": "jumprelu", "d_in": int(d_in), "d_sae": int(d_sae), "apply_b_dec_to_input": False,
           "normalize_activations": "none", "metadata": {"format": "gemma-scope", **facts}}
    return raw, {name: torch.from_numpy(np.asarray(arrays[name], dtype=np.float32)) for name in ARRAYS}
