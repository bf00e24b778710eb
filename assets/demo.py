"""``sae-lake demo``: materialize the whole asset graph on the embedded toy world, in DAGSTER_HOME.

The runs are ordinary Dagster runs of the code location's jobs, so ``make ui`` shows them afterwards.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from assets.config import load_settings
from assets.partitions import models_partitions, saes_partitions

SUMMARY_QUERIES = ("lm_eval", "activations_summary", "sae_metrics", "concept_recovery", "interpretability",
                   "interpretability_mu")


def _instance():
    from dagster import DagsterInstance

    os.environ.setdefault("DAGSTER_HOME", str(Path("dagster_home").resolve()))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    return DagsterInstance.get()


def run_demo(instance=None, print_fn=print) -> dict[str, float]:
    """Run world -> each model's chain -> catalog; returns the wall time of each run in seconds."""
    from assets.definitions import defs

    settings = load_settings()
    instance = instance or _instance()
    from dagster import MultiPartitionKey

    from assets.registry import missing_variants
    from assets.sweep import variants_for

    existing = set(instance.get_dynamic_partitions(models_partitions.name))
    new = [m.slug for m in settings.models if m.slug not in existing]
    if new:
        instance.add_dynamic_partitions(models_partitions.name, new)
    new_variants = missing_variants(settings, set(instance.get_dynamic_partitions(saes_partitions.name)))
    if new_variants:
        instance.add_dynamic_partitions(saes_partitions.name, new_variants)
    sweep = [("sae_sweep", MultiPartitionKey({"model": m.slug, "sae": v.name}))
             for m in settings.models for v in variants_for(settings, m.slug)]
    plan = [("world", None)] + [("model_chain", m.slug) for m in settings.models] + sweep + [("catalog_refresh", None)]
    timings = {}
    for job, partition in plan:
        label = f"{job}[{partition}]" if partition else job
        print_fn(f"== {label}")
        start = time.perf_counter()
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition)
        timings[label] = time.perf_counter() - start
        if not result.success:
            raise SystemExit(f"demo: run {label} failed (see `make ui`, run {result.run_id})")
        print_fn(f"   done in {timings[label]:.1f}s (run {result.run_id[:8]})")
    return timings


def print_summary(print_fn=print) -> None:
    from assets.config import lake_root
    from assets.lake import Lake
    from assets.sql import connect_catalog, query_text

    lake = Lake(lake_root(load_settings()))
    with connect_catalog(lake.catalog_path) as con:
        for name in SUMMARY_QUERIES:
            print_fn(f"\n-- sql/{name}.sql")
            con.sql(query_text(name)).show(max_width=240)
