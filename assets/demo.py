"""``sae-lake demo``: materialize the whole asset graph on the embedded toy world, in DAGSTER_HOME.

The runs are ordinary Dagster runs of the code location's jobs, so ``make ui`` shows them afterwards with
every event. The terminal gets one line per run (``[23/92] sae_sweep[toy-gemma2|topk-k4] 9.2 s, about 7 min
left``), warnings and failures in full, and the result tables at the end; ``-v`` streams every event.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from assets.lakehouse.config import load_settings

SUMMARY_QUERIES = ("lm_eval", "activations_summary", "sae_metrics", "concept_recovery", "interpretability",
                   "interpretability_mu", "steering", "contextual", "reliability", "selection", "rank_agreement",
                   "rank_psi", "control")


def _instance():
    from dagster import DagsterInstance

    os.environ.setdefault("DAGSTER_HOME", str(Path("dagster_home").resolve()))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    return DagsterInstance.get()


def demo_plan(settings) -> list[tuple[str, str | None]]:
    """(job, partition key) in order: the world, each model's chain, each valid (model, variant), the catalog."""
    from assets.lakehouse.registry import valid_pairs
    from assets.shared.partitions import pair_key

    return ([("world", None)] + [("model_chain", m.slug) for m in settings.registry]
            + [("sae_sweep", pair_key(m, v)) for m, v in valid_pairs(settings)] + [("catalog_refresh", None)])


def _asset_selection(job_def, settings, partition) -> list | None:
    """The sweep job without ``patching`` for a pair that is not patched (``Settings.patches``; None: all)."""
    keys = partition.keys_by_dimension if job_def.name == "sae_sweep" else {}
    if not keys or settings.patches(keys["model"], keys["sae"]):
        return None
    return [k for k in job_def.asset_layer.executable_asset_keys if k.to_user_string() != "patching"]


def _add_partitions(instance, settings) -> None:
    from assets.lakehouse.registry import missing_variants
    from assets.shared.partitions import models_partitions, saes_partitions

    existing = set(instance.get_dynamic_partitions(models_partitions.name))
    new = [m.slug for m in settings.registry if m.slug not in existing]
    if new:
        instance.add_dynamic_partitions(models_partitions.name, new)
    variants = missing_variants(settings, set(instance.get_dynamic_partitions(saes_partitions.name)))
    if variants:
        instance.add_dynamic_partitions(saes_partitions.name, variants)


def _eta(timings: dict[str, float], plan: list, done: int) -> str:
    """Time left, from the mean time of each job's runs so far; jobs not yet timed are named instead."""
    by_job: dict[str, list[float]] = {}
    for (job, _), seconds in zip(plan, timings.values(), strict=False):
        by_job.setdefault(job, []).append(seconds)
    todo = [job for job, _ in plan[done:]]
    left = sum(sum(by_job[job]) / len(by_job[job]) for job in todo if job in by_job)
    untimed = sorted({job for job in todo if job not in by_job})
    if not left:
        return f"{', '.join(untimed)} not timed yet"
    estimate = f"about {left / 60:.0f} min left" if left >= 90 else f"about {left:.0f} s left"
    return estimate + (f" (+ {', '.join(untimed)}, not timed yet)" if untimed else "")


def run_demo(instance=None, print_fn: Callable[[str], None] = print, verbose: bool = False) -> dict[str, float]:
    """Run every job of ``demo_plan``; returns the wall time of each run in seconds."""
    from assets.definitions import defs

    settings = load_settings()
    if notice := settings.oracle_notice():
        print_fn(notice)
    instance = instance or _instance()
    _add_partitions(instance, settings)
    plan = demo_plan(settings)
    quiet = {} if verbose else {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    timings: dict[str, float] = {}
    for i, (job, partition) in enumerate(plan, start=1):
        label = f"{job}[{partition}]" if partition else job
        start = time.perf_counter()
        job_def = defs.resolve_job_def(job)
        result = job_def.execute_in_process(instance=instance, partition_key=partition, run_config=quiet,
                                            raise_on_error=False,
                                            asset_selection=_asset_selection(job_def, settings, partition))
        timings[label] = time.perf_counter() - start
        if not result.success:
            _report_failure(result, label, print_fn)
        left = _eta(timings, plan, i) if i < len(plan) else "done"
        print_fn(f"[{i}/{len(plan)}] {label} {timings[label]:.1f} s, {left}")
    return timings


IOI_CHECK = "patching_model_solves_ioi"


def _report_failure(result, label: str, print_fn: Callable[[str], None]) -> None:
    """A run that failed only because its model does not solve IOI is a refusal, not an error: everything else
    of the run landed, the patching report leaves the model out, and the demo goes on with one line. Any other
    failure stops the demo with every failed step's root cause."""
    failed = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    if failed and all(IOI_CHECK in e.step_key for e in failed):
        refusals = {e.event_specific_data.description for e in result.all_events
                    if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed}
        print_fn(f"demo: {label}: not patched: {'; '.join(sorted(refusals))}")
        return
    errors = [f"  {e.step_key}: {_root_cause(e.step_failure_data.error)}" for e in failed]
    raise SystemExit("\n".join([f"demo: run {label} failed (run {result.run_id}; `make ui` shows its events)",
                                *errors]))


def _root_cause(error) -> str:
    """The innermost message of a step's error (Dagster wraps the user's exception in its own)."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


def print_summary(print_fn: Callable[[str], None] = print) -> None:
    from assets.lakehouse.config import open_lake
    from assets.lakehouse.sql import connect_catalog, query_text

    lake = open_lake(load_settings())
    with connect_catalog(lake.fetch_catalog()) as con:
        lake.configure_duckdb(con)
        for name in SUMMARY_QUERIES:
            print_fn(f"\n-- sql/{name}.sql")
            con.sql(query_text(name)).show(max_width=240)
