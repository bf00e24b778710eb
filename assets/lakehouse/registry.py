"""What lake.toml asks for: the models, the SAE variants of each, and which (model, variant) pairs are valid.

The sweep's variants belong to every trained model, the part ``[control] variants`` names to every control
twin; the ``[oracle]`` dictionaries to every trained model when the corpus has labels; an ``[[external_saes]]``
entry belongs to its own model only.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from assets.lakehouse.config import ModelEntry, Settings
from sae_models.sae.sweep import Variant, external_variant, oracle_variants, sweep_variants

if TYPE_CHECKING:
    from assets.lakehouse.lake import Lake

PAIR_SEPARATOR = "|"  # MultiPartitionKey's string form: "<model>|<variant>"


def model_location(entry: ModelEntry, lake: Lake) -> str:
    """Where the weights load from: the lake for toy models and control twins (its local mirror for an
    object-store lake), else the registry's source."""
    return str(lake.fetch("models", model=entry.slug)) if entry.in_lake else entry.source


def missing_variants(settings: Settings, existing: set[str]) -> list[str]:
    """The variant partition keys lake.toml asks for that ``existing`` lacks, in order."""
    return list(dict.fromkeys(v.name for v in all_variants(settings) if v.name not in existing))


def all_variants(settings: Settings) -> list[Variant]:
    """The sweep's variants, the oracles, then the registered external SAEs."""
    external = [external_variant(e.name, e.model, e.path, e.norm_scaling_factor) for e in settings.external_saes]
    return sweep_variants(settings.sweep) + oracle_variants(settings.oracle) + external


def _why_not(settings: Settings, model: str, v: Variant) -> str | None:
    """Why ``model`` does not get the variant ``v`` (None when it does)."""
    if v.model not in (None, model):
        return f"SAE variant {v.name!r} is an external SAE of {v.model!r}, not of {model!r}"
    twin = settings.model(model).control_of is not None
    if v.is_oracle and (twin or not settings.has_labels):
        return (f"SAE variant {v.name!r} is an oracle: " + ("a control twin gets none" if twin else
                settings.oracle_notice() or "the corpus has no labels"))
    if twin and not settings.control.sweeps(v.name):
        return f"SAE variant {v.name!r} is not in [control] variants, the sweep of control twins"
    return None


def variants_for(settings: Settings, model: str) -> list[Variant]:
    return [v for v in all_variants(settings) if _why_not(settings, model, v) is None]


def valid_pairs(settings: Settings) -> list[tuple[str, str]]:
    """Every (model, variant) pair the current lake.toml asks for, models in registry order (twins last)."""
    return [(m.slug, v.name) for m in settings.registry for v in variants_for(settings, m.slug)]


def unrequested_pairs(settings: Settings, patched_only: bool = False) -> dict[str, Counter[str]]:
    """For each model, why lake.toml does not ask for some pairs of the (model x variant) partition grid, and how
    many pairs each reason leaves out; ``patched_only``: for ``patching``, which runs on fewer pairs."""
    gaps: dict[str, Counter[str]] = {}
    for m in settings.registry:
        for v in all_variants(settings):
            why = _why_not(settings, m.slug, v)
            if why is not None:
                reason = why.removeprefix(f"SAE variant {v.name!r} is ")
            elif patched_only and not settings.patches(m.slug, v.name):
                reason = "not patched ([patching] variants of trained models only)"
            else:
                continue
            gaps.setdefault(m.slug, Counter())[reason] += 1
    return gaps


def partition_grid_note(settings: Settings, patched_only: bool = False) -> str:
    """What the per-SAE partition counts of the Dagster UI mean: the grid is every registered model times every
    variant, and the pairs lake.toml does not ask for are never requested."""
    n_models, n_variants = len(settings.registry), len(all_variants(settings))
    gaps = unrequested_pairs(settings, patched_only)
    grid, skipped = n_models * n_variants, sum(n for reasons in gaps.values() for n in reasons.values())
    note = (f"Partitions: model x SAE variant, {n_models} x {n_variants} = {grid} in lake.toml's grid, of which it "
            f"asks for {grid - skipped}.")
    if gaps:
        note += (f" The other {skipped} are never requested, and count as missing unless built under an earlier "
                 "lake.toml: " + "; ".join(f"{model}, {sum(reasons.values())} ("
                                          + ", ".join(f"{n} {reason}" for reason, n in reasons.items()) + ")"
                                          for model, reasons in gaps.items()) + ".")
    return note + (" The UI's grid also holds any model or variant since removed from lake.toml (with its last "
                   "tables; sae_variants in SQL says which), which these counts leave out.")


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
        if (why := _why_not(settings, model, v)) is not None:
            raise KeyError(why)
        return v
    raise KeyError(f"SAE variant {name!r} is not in lake.toml's [sweep] or [[external_saes]] (retired)")
