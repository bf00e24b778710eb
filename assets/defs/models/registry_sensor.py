"""Keeps the ``models`` and ``saes`` partitions in step with lake.toml.

A model added to the file gets its partition and a run of its chain; a model removed from the file is
reported, and its partition and data are left alone (a changed entry is the automation's: ``SettingsChanged``
reruns exactly what the edit shapes). New SAE
variants get their partitions; the per-SAE assets' automation then requests exactly the (model, variant)
pairs that lake.toml asks for (``InCurrentSweep``). When that set of pairs changes (a variant added, retired
or put back), the catalog is refreshed so its ``sae_variants`` view says which results are retired.
"""

import json
from dataclasses import dataclass

import dagster as dg

from assets.defs.analysis.catalog import catalog_refresh_job
from assets.defs.models.language_model import model_chain_job
from assets.lakehouse.config import ConfigError, Settings
from assets.lakehouse.fingerprints import fingerprint
from assets.lakehouse.registry import missing_variants, valid_pairs
from assets.shared.partitions import models_partitions, saes_partitions
from assets.shared.resources import LakeResource

MODEL_CHAIN = model_chain_job.name
CATALOG_REFRESH = catalog_refresh_job.name
PAIRS = "_pairs"  # cursor entry: hash of the valid (model, variant) pairs last seen


@dataclass(frozen=True)
class RegistryDiff:
    added: list[str]
    removed: list[str]


def diff_registry(settings: Settings, existing: set[str]) -> RegistryDiff:
    slugs = [m.slug for m in settings.registry]
    return RegistryDiff(added=[s for s in slugs if s not in existing], removed=sorted(existing - set(slugs)))


def pairs_hash(settings: Settings) -> str:
    """What the analysis reads of lake.toml beyond the tables: the valid pairs, and whether the rank analysis
    takes the control twins' SAEs (a change of either refreshes the analysis)."""
    return fingerprint({"pairs": valid_pairs(settings), "controls_ranked": settings.control.in_rank_analysis})


@dg.sensor(jobs=[model_chain_job, catalog_refresh_job], minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.RUNNING)
def model_registry_sensor(context: dg.SensorEvaluationContext, lake: LakeResource):
    """Adds a partition per new model and variant in lake.toml and requests each new model's chain."""
    try:
        settings = lake.settings()
    except ConfigError as exc:
        return dg.SkipReason(f"lake.toml is invalid, nothing requested: {exc}")
    existing = set(context.instance.get_dynamic_partitions(models_partitions.name))
    seen = json.loads(context.cursor) if context.cursor else {}
    diff = diff_registry(settings, existing)
    if diff.removed:
        context.log.warning(f"models no longer in lake.toml (partitions and data kept): {diff.removed}")
    if notice := settings.oracle_notice():
        context.log.warning(notice)
    cursor = {PAIRS: pairs_hash(settings)}
    partition_requests = [models_partitions.build_add_request(diff.added)] if diff.added else []
    new_variants = missing_variants(settings, set(context.instance.get_dynamic_partitions(saes_partitions.name)))
    if new_variants:
        partition_requests.append(saes_partitions.build_add_request(new_variants))
    runs = [dg.RunRequest(job_name=MODEL_CHAIN, partition_key=s, run_key=f"{s}:new") for s in diff.added]
    if seen and seen.get(PAIRS) != cursor[PAIRS]:
        runs.append(dg.RunRequest(job_name=CATALOG_REFRESH, run_key=f"pairs:{cursor[PAIRS]}"))
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=partition_requests,
                           cursor=json.dumps(cursor))
