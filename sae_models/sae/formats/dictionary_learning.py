"""dictionary_learning's trainer folders (Marks, Karvonen, Mueller): ``ae.pt`` (a state dict) and ``config.json``.

``config.json`` holds ``{"trainer": {"dict_class": ..., "activation_dim": ..., "dict_size": ..., "k": ...,
"lm_name": ..., "layer": ..., "submodule_name": ...}, "buffer": {...}}``; the state dict's layout is the
``dict_class``'s own. Each class, and the SAELens architecture its inference equals (``f`` the codes):

- ``AutoEncoder``: ``f = ReLU(encoder(x - bias))``, ``x_hat = decoder(f) + bias`` (``nn.Linear`` layers; ``bias``
  is b_dec): standard.
- ``AutoEncoderNew`` (the April 2024 update): ``f = ReLU(encoder(x))``, ``x_hat = decoder(f)`` with the decoder's
  own bias as b_dec: standard, reading x itself.
- ``GatedAutoEncoder``: ``encoder`` without bias reads ``x - decoder_bias``; ``gate_bias``, ``mag_bias``,
  ``r_mag``: gated.
- ``JumpReluAutoEncoder``: ``W_enc`` ... ``threshold`` as SAELens names them; the encoder reads x itself: jumprelu.
- ``AutoEncoderTopK``: ``f = TopK(ReLU(encoder(x - b_dec)))`` with the ``k`` buffer (its ``threshold`` buffer is
  used only when asked, never by default): topk.
- ``BatchTopKSAE`` and ``MatryoshkaBatchTopKSAE`` (``W_enc`` layout): at inference ``f = ReLU(pre) * (ReLU(pre) >
  threshold)`` with one trained threshold for all latents (the batch's top k is a training device): jumprelu with
  that threshold for every latent, as this library exports its own BatchTopK SAEs.

``ae.pt`` is read with ``torch.load(weights_only=True)``. A trainer interrupted mid-run leaves, under the same
name, a backup (``{"step", "ae", "optimizer", "config", "norm_factor"}``), not a finished SAE: refused as such.
"""

import json
from pathlib import Path

import torch

from sae_models.sae.base import SAECheckpointError

CFG_FILE = "config.json"
WEIGHTS_FILE = "ae.pt"
BACKUP_KEYS = {"ae", "optimizer", "step"}


def _linear(s: dict, prefix: str) -> torch.Tensor:
    """An ``nn.Linear``'s weight ([out, in]) as our [in, out] matrix."""
    return s[f"{prefix}.weight"].T.contiguous()


def _uniform_threshold(s: dict) -> torch.Tensor:
    d_sae = s["W_enc"].shape[1] if "W_enc" in s else s["encoder.weight"].shape[0]
    return s["threshold"].float().reshape(()).expand(d_sae).clone()


# dict_class -> (SAELens architecture, apply_b_dec_to_input, its tensors as SAELens names them)
CLASSES = {
    "AutoEncoder": ("standard", True, lambda s: {
        "W_enc": _linear(s, "encoder"), "b_enc": s["encoder.bias"], "W_dec": _linear(s, "decoder"),
        "b_dec": s["bias"]}),
    "AutoEncoderNew": ("standard", False, lambda s: {
        "W_enc": _linear(s, "encoder"), "b_enc": s["encoder.bias"], "W_dec": _linear(s, "decoder"),
        "b_dec": s["decoder.bias"]}),
    "GatedAutoEncoder": ("gated", True, lambda s: {
        "W_enc": _linear(s, "encoder"), "b_gate": s["gate_bias"], "b_mag": s["mag_bias"], "r_mag": s["r_mag"],
        "W_dec": _linear(s, "decoder"), "b_dec": s["decoder_bias"]}),
    "JumpReluAutoEncoder": ("jumprelu", False, lambda s: {
        k: s[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}),
    "AutoEncoderTopK": ("topk", True, lambda s: {
        "W_enc": _linear(s, "encoder"), "b_enc": s["encoder.bias"], "W_dec": _linear(s, "decoder"),
        "b_dec": s["b_dec"]}),
    "BatchTopKSAE": ("jumprelu", True, lambda s: {
        "W_enc": _linear(s, "encoder"), "b_enc": s["encoder.bias"], "W_dec": _linear(s, "decoder"),
        "b_dec": s["b_dec"], "threshold": _uniform_threshold(s)}),
    "MatryoshkaBatchTopKSAE": ("jumprelu", True, lambda s: {
        **{k: s[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec")}, "threshold": _uniform_threshold(s)}),
}



def _trainer_cfg(path: Path) -> dict:
    try:
        trainer = json.loads(path.read_text()).get("trainer")
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise SAECheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(trainer, dict) or "dict_class" not in trainer:
        raise SAECheckpointError(f"{path}: no trainer.dict_class (not a dictionary_learning trainer folder)")
    if trainer["dict_class"] not in CLASSES:
        raise SAECheckpointError(f"{path}: dict_class {trainer['dict_class']!r} is not supported "
                                 f"(supported: {sorted(CLASSES)})")
    return trainer


def _state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses a pickle of anything but tensors; a torn file fails otherwise
        # (OSError, EOFError, RuntimeError): either way one error naming the file
        raise SAECheckpointError(f"{path}: not loadable as tensors with weights_only=True ({exc})") from None
    if isinstance(state, dict) and set(state) >= BACKUP_KEYS:
        raise SAECheckpointError(f"{path}: a mid-run backup (step {state['step']}), not a finished SAE: the trainer "
                                 "stopped before it saved one")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SAECheckpointError(f"{path}: not a state dict of tensors")
    return state


def read_dictionary_learning(directory: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The SAELens config and tensors of the dictionary_learning SAE in the trainer folder ``directory``."""
    directory = Path(directory)
    trainer, state = _trainer_cfg(directory / CFG_FILE), _state(directory / WEIGHTS_FILE)
    architecture, b_dec_to_input, tensors_of = CLASSES[trainer["dict_class"]]
    try:
        tensors = {k: v.float() for k, v in tensors_of(state).items()}
    except KeyError as exc:
        raise SAECheckpointError(f"{directory / WEIGHTS_FILE}: no tensor {exc.args[0]!r}, which a "
                                 f"{trainer['dict_class']} has") from None
    d_in, d_sae = tensors["W_enc"].shape
    stated = (trainer.get("activation_dim", d_in), trainer.get("dict_size", d_sae))
    if stated != (d_in, d_sae):
        raise SAECheckpointError(f"{directory / CFG_FILE}: activation_dim and dict_size {stated} do not match the "
                                 f"tensors' ({d_in}, {d_sae})")
    raw = {"architecture": architecture, "d_in": int(d_in), "d_sae": int(d_sae), "apply_b_dec_to_input":
           b_dec_to_input, "normalize_activations": "none",
           "metadata": {"format": "dictionary_learning", **{k: trainer[k] for k in (
               "dict_class", "trainer_class", "lm_name", "layer", "submodule_name") if k in trainer}}}
    if architecture == "topk":
        raw["k"] = int(state["k"])
    return raw, tensors
