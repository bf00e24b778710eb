"""EleutherAI's sparsify: a folder per hook point holding ``cfg.json`` and ``sae.safetensors``.

The tensors: ``encoder.weight`` [d_sae, d_in] and ``encoder.bias`` [d_sae] (an ``nn.Linear``), ``W_dec``
[d_sae, d_in] and ``b_dec`` [d_in]; the encoder reads x - b_dec, takes the ReLU and keeps the k largest:

    f = TopK(ReLU((x - b_dec) @ encoder.weight.T + encoder.bias));  x_hat = f @ W_dec + b_dec

which is our TopK SAE with ``W_enc = encoder.weight.T``. Every field of ``cfg.json`` is read or refused by name:
a transcoder (``transcode``), a skip connection (``skip_connection``, its ``W_skip``) and the ``groupmax``
activation compute something a TopK SAE of one site does not; ``multi_topk`` and ``normalize_decoder`` shape
training only; ``num_latents`` and ``expansion_factor`` are checked against the tensors.
"""

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from sae_models.sae.base import SAECheckpointError

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
TRAINING_ONLY = {"multi_topk", "normalize_decoder"}
REFUSED = {"transcode": "a transcoder predicts a module's output from its input, not an SAE of one site",
           "skip_connection": "its linear skip connection (W_skip) is not part of an SAE's reconstruction",
           "signed": "its codes may be negative, unlike a TopK SAE's ReLU codes"}  # EleutherAI/sae's older configs
FIELDS = {"d_in", "k", "num_latents", "expansion_factor", "activation", *TRAINING_ONLY, *REFUSED}



def _cfg(path: Path) -> dict:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SAECheckpointError(f"{path}: not valid JSON ({exc})") from None
    unknown = sorted(set(cfg) - FIELDS)
    if unknown:
        raise SAECheckpointError(f"{path}: fields {unknown} are not known to this reader (known: {sorted(FIELDS)})")
    for field, why in REFUSED.items():
        if cfg.get(field):
            raise SAECheckpointError(f"{path}: {field} true is not supported: {why}")
    if cfg.get("activation", "topk") != "topk":
        raise SAECheckpointError(f"{path}: activation {cfg['activation']!r} is not supported (supported: 'topk')")
    return cfg


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise SAECheckpointError(f"{path}: unreadable or truncated ({exc})") from None
    needed = ("encoder.weight", "encoder.bias", "W_dec", "b_dec")
    missing = [name for name in needed if name not in tensors]
    if missing:
        raise SAECheckpointError(f"{path}: no tensor {', '.join(missing)} (a sparsify SAE has {', '.join(needed)})")
    return {name: tensors[name].float() for name in needed}


def read_sparsify(directory: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The SAELens config and tensors of the sparsify SAE in ``directory``."""
    directory = Path(directory)
    cfg, tensors = _cfg(directory / CFG_FILE), _tensors(directory / WEIGHTS_FILE)
    d_sae, d_in = tensors["encoder.weight"].shape
    stated = cfg.get("num_latents") or cfg.get("expansion_factor", 0) * cfg.get("d_in", d_in)
    if cfg.get("d_in", d_in) != d_in or (stated and stated != d_sae):
        raise SAECheckpointError(f"{directory / CFG_FILE}: d_in {cfg.get('d_in')} and {stated} latents do not "
                                 f"match the tensors' [{d_sae}, {d_in}]")
    raw = {"architecture": "topk", "d_in": int(d_in), "d_sae": int(d_sae), "k": int(cfg.get("k", 32)),
           "apply_b_dec_to_input": True, "normalize_activations": "none",
           "metadata": {"format": "sparsify", "hookpoint": directory.name}}
    return raw, {"W_enc": tensors["encoder.weight"].T.contiguous(), "b_enc": tensors["encoder.bias"],
                 "W_dec": tensors["W_dec"], "b_dec": tensors["b_dec"]}
