"""``sae-lake demo``: materialize the whole asset graph on the embedded toy world, in DAGSTER_HOME.

The runs are ordinary Dagster runs of the code location's jobs, so ``make ui`` shows them afterwards with
every event. The terminal gets one line per run (``[23/72] sae_sweep[toy-gemma2|topk-k4] 9.2 s, about 7 min
left``), warnings and failures in full, and the result tables at the end; ``-v`` streams every event. The runs
of one wave (the models' chains, then every SAE) share the cores, one run per worker process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from assets.lakehouse.config import load_settings

SUMMARY_QUERIES = ("lm_eval", "activations_summary", "sae_metrics", "concept_recovery", "interpretability",
                   "interpretability_mu", "steering")


def _instance():
    from dagster import DagsterInstance

    os.environ.setdefault("DAGSTER_HOME", str(Path("dagster_home").resolve()))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    return DagsterInstance.get()


def demo_plan(settings) -> list[list[tuple[str, str | None]]]:
    """(job, partition key) in waves whose runs are independent of each other: the world, each model's chain,
    each valid (model, variant) grouped by model, the catalog."""
    from assets.lakehouse.registry import valid_pairs
    from assets.shared.partitions import pair_key

    return [[("world", None)], [("model_chain", m.slug) for m in settings.models],
            [("sae_sweep", pair_key(m, v)) for m, v in valid_pairs(settings)], [("catalog_refresh", None)]]


def _add_partitions(instance, settings) -> None:
    from assets.defs.models.registry_sensor import missing_variants
    from assets.shared.partitions import models_partitions, saes_partitions

    existing = set(instance.get_dynamic_partitions(models_partitions.name))
    new = [m.slug for m in settings.models if m.slug not in existing]
    if new:
        instance.add_dynamic_partitions(models_partitions.name, new)
    variants = missing_variants(settings, set(instance.get_dynamic_partitions(saes_partitions.name)))
    if variants:
        instance.add_dynamic_partitions(saes_partitions.name, variants)


def _label(job: str, partition: str | None) -> str:
    return f"{job}[{partition}]" if partition else job


def _eta(timings: dict[str, float], todo: list[tuple[str, str | None]], workers: int = 1) -> str:
    """Time left, from the mean time of each job's runs so far shared among the workers; jobs not yet timed
    are named instead."""
    by_job: dict[str, list[float]] = {}
    for label, seconds in timings.items():
        by_job.setdefault(label.split("[")[0], []).append(seconds)
    left = sum(sum(by_job[job]) / len(by_job[job]) for job, _ in todo if job in by_job) / workers
    untimed = sorted({job for job, _ in todo if job not in by_job})
    if not left:
        return f"{', '.join(untimed)} not timed yet"
    estimate = f"about {left / 60:.0f} min left" if left >= 90 else f"about {left:.0f} s left"
    return estimate + (f" (+ {', '.join(untimed)}, not timed yet)" if untimed else "")


_worker_instance = None


def _start_worker(instance_ref, torch_threads: int) -> None:
    """Each worker process opens the same Dagster instance and takes its share of the cores."""
    import torch
    from dagster import DagsterInstance

    global _worker_instance
    torch.set_num_threads(torch_threads)
    _worker_instance = DagsterInstance.from_ref(instance_ref)


def _execute(job: str, partition: str | None, verbose: bool, instance=None) -> tuple[float, bool, str]:
    """One ordinary Dagster run of ``job``: (wall seconds, success, run id)."""
    from assets.definitions import defs

    quiet = {} if verbose else {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    start = time.perf_counter()
    result = defs.resolve_job_def(job).execute_in_process(instance=instance or _worker_instance,
                                                          partition_key=partition, run_config=quiet,
                                                          raise_on_error=False)
    return time.perf_counter() - start, result.success, result.run_id


def run_demo(instance=None, print_fn: Callable[[str], None] = print, verbose: bool = False,
             workers: int = 1) -> dict[str, float]:
    """Run every job of ``demo_plan``, ``workers`` runs at a time (each in its own process when more than
    one); returns the wall time of each run in seconds. A toy SAE's run keeps about one core busy whatever
    torch's thread count, so one worker per core is what makes the demo fit its budget."""
    if workers < 1:
        raise SystemExit(f"demo: --workers must be at least 1, not {workers}")
    settings = load_settings()
    instance = instance or _instance()
    _add_partitions(instance, settings)
    waves = demo_plan(settings)
    todo = [run for wave in waves for run in wave]
    timings: dict[str, float] = {}

    def finished(job: str, partition: str | None, outcome: tuple[float, bool, str]) -> None:
        seconds, success, run_id = outcome
        label = _label(job, partition)
        if not success:
            raise SystemExit(f"demo: run {label} failed (run {run_id}; `make ui` shows its events)")
        timings[label] = seconds
        todo.remove((job, partition))
        left = _eta(timings, todo, workers) if todo else "done"
        print_fn(f"[{len(timings)}/{len(timings) + len(todo)}] {label} {seconds:.1f} s, {left}")

    if workers == 1:
        for job, partition in list(todo):
            finished(job, partition, _execute(job, partition, verbose, instance))
        return timings
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                               initargs=(instance.get_ref(), threads))
    try:
        for wave in waves:
            pending = {pool.submit(_execute, job, partition, verbose): (job, partition) for job, partition in wave}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    finished(*pending.pop(future), future.result())
    finally:
        pool.shutdown(cancel_futures=True)  # after a failure, the runs not yet started never start
    return timings


def print_summary(print_fn: Callable[[str], None] = print) -> None:
    from assets.lakehouse.config import lake_root
    from assets.lakehouse.lake import Lake
    from assets.lakehouse.sql import connect_catalog, query_text

    lake = Lake(lake_root(load_settings()))
    with connect_catalog(lake.catalog_path) as con:
        for name in SUMMARY_QUERIES:
            print_fn(f"\n-- sql/{name}.sql")
            con.sql(query_text(name)).show(max_width=240)
