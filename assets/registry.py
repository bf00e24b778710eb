"""Keeps the ``models`` and ``saes`` partitions in step with lake.toml.

A model added to the file gets its partition and a run of its chain; a model whose entry changed is
rerun; a model removed from the file is reported, and its partition and data are left alone. New SAE
variants of the sweep get their partitions; the SAE assets' automation conditions then request the
(model x variant) runs once a model's activations are in the lake.
"""

import json
from dataclasses import dataclass

import dagster as dg

from assets.config import ConfigError, Settings
from assets.partitions import models_partitions, saes_partitions
from assets.resources import LakeResource

MODEL_CHAIN = "model_chain"
SAE_SWEEP = "sae_sweep"


@dataclass(frozen=True)
class RegistryDiff:
    added: list[str]
    changed: list[str]
    removed: list[str]


def diff_registry(settings: Settings, existing: set[str], seen: dict[str, str]) -> RegistryDiff:
    """``seen`` maps slugs to the fingerprint last acted upon (empty for a model never seen changing)."""
    prints = {m.slug: m.fingerprint() for m in settings.models}
    return RegistryDiff(
        added=[s for s in prints if s not in existing],
        changed=[s for s in prints if s in existing and seen.get(s, prints[s]) != prints[s]],
        removed=sorted(existing - set(prints)),
    )


@dg.sensor(job_name=MODEL_CHAIN, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def model_registry_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """Adds a partition per new model in lake.toml and requests its chain (model, activations)."""
    try:
        settings = lake.settings()
    except ConfigError as exc:
        return dg.SkipReason(f"lake.toml is invalid, nothing requested: {exc}")
    existing = set(context.instance.get_dynamic_partitions(models_partitions.name))
    seen = json.loads(context.cursor) if context.cursor else {}
    diff = diff_registry(settings, existing, seen)
    if diff.removed:
        context.log.warning(f"models no longer in lake.toml (partitions and data kept): {diff.removed}")
    prints = {m.slug: m.fingerprint() for m in settings.models}
    partition_requests = [models_partitions.build_add_request(diff.added)] if diff.added else []
    new_variants = missing_variants(settings, set(context.instance.get_dynamic_partitions(saes_partitions.name)))
    if new_variants:
        partition_requests.append(saes_partitions.build_add_request(new_variants))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=s, run_key=f"{s}:{prints[s]}") for s in diff.added + diff.changed],
        dynamic_partitions_requests=partition_requests,
        cursor=json.dumps(prints),
    )


def missing_variants(settings: Settings, existing: set[str]) -> list[str]:
    from assets.sweep import all_variants

    return [v.name for v in all_variants(settings) if v.name not in existing]
