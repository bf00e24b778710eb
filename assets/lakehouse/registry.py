"""What lake.toml asks for: the models, the SAE variants of each, and which (model, variant) pairs are valid.

The sweep's variants belong to every trained model, the part ``[control] variants`` names to every control
twin; an ``[[external_saes]]`` entry belongs to its own model only.
"""

from __future__ import annotations

from assets.lakehouse.config import Settings
from sae_models.sae.sweep import Variant, external_variant, sweep_variants

PAIR_SEPARATOR = "|"  # MultiPartitionKey's string form: "<model>|<variant>"


def all_variants(settings: Settings) -> list[Variant]:
    """The sweep's variants, then the registered external SAEs."""
    external = [external_variant(e.name, e.model, e.path) for e in settings.external_saes]
    return sweep_variants(settings.sweep) + external


def variants_for(settings: Settings, model: str) -> list[Variant]:
    twin = settings.model(model).control_of is not None
    return [v for v in all_variants(settings)
            if v.model in (None, model) and (not twin or settings.control.sweeps(v.name))]


def valid_pairs(settings: Settings) -> list[tuple[str, str]]:
    """Every (model, variant) pair the current lake.toml asks for, models in registry order (twins last)."""
    return [(m.slug, v.name) for m in settings.registry for v in variants_for(settings, m.slug)]


def variant_status(settings: Settings, lake) -> list[tuple[str, str, bool, bool]]:
    """(model, variant, in lake.toml now, has an SAE in the lake) for every pair that is either."""
    current = set(valid_pairs(settings))
    present = {(m, s) for m in lake.partitions("saes", "model") for s in lake.partitions(f"saes/model={m}", "sae")}
    return [(m, s, (m, s) in current, (m, s) in present) for m, s in sorted(current | present)]


def find_variant(settings: Settings, model: str, name: str) -> Variant:
    """The variant ``name`` of ``model``; a KeyError that says why when the pair is not in lake.toml."""
    for v in all_variants(settings):
        if v.name != name:
            continue
        if v.model not in (None, model):
            raise KeyError(f"SAE variant {name!r} is an external SAE of {v.model!r}, not of {model!r}")
        if settings.model(model).control_of is not None and not settings.control.sweeps(name):
            raise KeyError(f"SAE variant {name!r} is not in [control] variants, the sweep of control twins")
        return v
    raise KeyError(f"SAE variant {name!r} is not in lake.toml's [sweep] or [[external_saes]] (retired)")
