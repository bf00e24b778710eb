"""What shaped each output: per asset and partition, the settings it was built from (its own and those of
everything upstream), hashed into a fingerprint.

Every write records the fingerprint beside the data (``_settings.json`` in the partition folder, renamed
into place with it) and on the materialization (metadata and data version). A settings edit changes the
fingerprint of exactly the partitions it shapes: ``[sweep.train]`` those of trained SAEs but not of the
baselines, ``[judge]`` only autointerp, interpretability and the steering ratings (never the generations).
``SettingsChanged`` (assets/shared/automation.py) reruns them.

Which settings of a section shape which part is declared on the fields themselves (``sae_models.config.shapes``
and ``no_result``), read here from the settings' own classes.
"""

from __future__ import annotations

import hashlib
import json

from assets.lakehouse.config import Settings
from assets.lakehouse.lake import Lake
from assets.lakehouse.registry import find_variant
from assets.lakehouse.tables import spec
from sae_models.config import Config, fields_shaping, no_result_fields
from sae_models.sae.sweep import variant_settings

# A registry entry's fields that shape the model itself; the others (layer, hook, dtype, tokens) its activations.
# A control twin is shaped by its seed, its stored dtype and the toy architecture, not by how the trained model
# trains; whether a model has a twin shapes only the twin.
MODEL_FIELDS = {"slug", "source", "revision", "trust_remote_code", "toy"}
TWIN_FIELDS = {"control_of", "control_seed", "dtype"}
CONTROL_FIELDS = {"control", "control_of", "control_seed"}
DECLARED_FIELDS = {"d_model"}  # a fact lake.toml states for the plan, checked when the model loads: shapes nothing
TOY_TRAINING = {"steps", "batch", "lr", "warmup", "weight_decay", "seed"}

# The stage of each asset: its settings are those of its stage and of every stage before it.
STAGE = {
    "corpus": "world", "language_model": "model", "lm_eval": "model", "activations": "activations",
    "sae": "sae", "sae_training": "sae", "latent_stats": "sae", "concept_recovery": "sae", "latent_purity": "sae",
    "sae_metrics": "metrics", "latent_examples": "examples", "autointerp": "scores", "interpretability": "scores",
    "true_interpretability": "window_truth",
    "steering_generations": "generations", "steering": "steering", "steering_concepts": "steering",
    "steering_summary": "steering", "true_steerability": "truth", "feature_scores": "feature_scores",
    "selection": "selection", "patching": "patching", "latent_profiles": "profiles",
    "feature_dashboards": "dashboards",
}
CORPUS_FOR_ACTIVATIONS = {"activation_docs"}  # the LMs learn from the lm_train / lm_eval splits only
# Where each asset's partition lives in the lake: (folder, partition keys).
LOCATION = {"language_model": ("lm_eval", ("model",)), "sae": ("saes", ("model", "sae")),
            "feature_dashboards": ("feature_dashboards", ("model", "sae"))}


def model_identity(entry) -> dict:
    """The settings that shape a registry entry's model (a twin's: its seed and dtype, not the training)."""
    if entry.control_of is None:
        return entry.model_dump(include=MODEL_FIELDS)
    return entry.model_dump(include=MODEL_FIELDS | TWIN_FIELDS, exclude={"toy": TOY_TRAINING})


def part(config: Config, name: str) -> dict:
    """The settings of ``config`` declared to shape the part ``name`` (a part no field declares is a bug here, not
    an empty part)."""
    fields = fields_shaping(type(config), name)
    if not fields:
        raise KeyError(f"no setting of {type(config).__name__} declares that it shapes {name!r}")
    return config.model_dump(include=fields)


def settings_of(asset: str, settings: Settings, model: str | None = None, variant: str | None = None) -> dict:
    """The settings that shape ``asset``'s partition (model, variant), as plain JSON-able data."""
    stage = STAGE[asset]
    if stage == "world":
        return {"corpus": settings.corpus.model_dump()}
    parts = {"corpus": settings.corpus.model_dump(exclude=CORPUS_FOR_ACTIVATIONS)}
    entry = settings.model(model)
    parts["model"] = model_identity(entry)
    pin = settings.cpu_pin  # the CPU's kernels and threads decide every float from here on
    parts["cpu"] = pin.model_dump(exclude={"pin"}) if pin else "unpinned"
    if stage == "model":
        return parts
    parts["hook_point"] = entry.model_dump(exclude=MODEL_FIELDS | CONTROL_FIELDS | DECLARED_FIELDS)
    parts["corpus_for_activations"] = settings.corpus.model_dump(include=CORPUS_FOR_ACTIVATIONS)
    parts["extraction"] = settings.extraction.model_dump(exclude=no_result_fields(type(settings.extraction)))
    if stage == "activations":
        return parts
    parts["sae"] = variant_settings(find_variant(settings, model, variant), settings.sweep)
    if stage == "metrics":
        parts["metrics"] = {"metric_docs": settings.sweep.metric_docs}
    if stage == "profiles":  # the SAE on its held-out activations, and the LM's unembedding
        return parts | {"profiles": part(settings.dashboards, "profiles")}
    if stage == "dashboards":  # a dashboard shows every per-SAE table
        return settings_of("selection", settings, model, variant) | {
            "metrics": {"metric_docs": settings.sweep.metric_docs},
            "feature_scores": part(settings.selection, "feature_scores"),
            "profiles": part(settings.dashboards, "profiles"),
            "dashboards": part(settings.dashboards, "dashboards")}
    if stage in ("examples", "scores", "steering", "selection", "window_truth"):
        parts["examples"] = part(settings.autointerp, "examples")
    if stage in ("generations", "steering", "selection", "truth"):
        parts["concepts"] = part(settings.autointerp, "concepts")
    if stage in ("generations", "steering", "selection"):
        parts["steering"] = part(settings.steering, "generations")
    if stage == "truth":  # the latents g steers and its factors; nothing of how text is generated or judged
        parts["steering"] = part(settings.steering, "truth")
    if stage in ("scores", "steering", "selection", "window_truth"):
        parts["autointerp"] = part(settings.autointerp, "scores")
    if stage in ("scores", "steering", "selection"):
        parts["judge"] = settings.judge.identity()
    if stage == "feature_scores":
        parts["feature_scores"] = part(settings.selection, "feature_scores")
    if stage == "selection":
        parts["selection"] = part(settings.selection, "selection")
    if stage == "patching":
        parts["patching"] = part(settings.patching, "patching")
    return parts


def fingerprint(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def record(asset: str, settings: Settings, model: str | None = None, variant: str | None = None) -> dict:
    """What a write stores beside the data: the fingerprint and the settings behind it."""
    parts = settings_of(asset, settings, model, variant)
    return {"asset": asset, "fingerprint": fingerprint(parts), "settings": parts}


def partition_of(asset: str, model: str | None = None, variant: str | None = None) -> tuple[str, dict[str, str]]:
    """(folder, partition keys) of ``asset``'s partition in the lake."""
    folder, keys = LOCATION[asset] if asset in LOCATION else (asset, spec(asset).keys)
    values = {"model": model, "sae": variant}
    return folder, {k: values[k] for k in keys}


def recorded_fingerprint(lake: Lake, asset: str, model: str | None = None, variant: str | None = None) -> str | None:
    """The fingerprint stored with the partition's data, or None when there is none."""
    folder, keys = partition_of(asset, model, variant)
    stored = lake.read_record(folder, **keys)
    return stored["fingerprint"] if stored else None
