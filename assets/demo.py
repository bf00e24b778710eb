"""``sae-lake demo``: materialize the whole asset graph on the embedded toy world, in DAGSTER_HOME.

The runs are ordinary Dagster runs of the code location's jobs, so ``make ui`` shows them afterwards with
every event. The terminal gets one line per run (``[23/92] sae_sweep[toy-gemma2|topk-k4] 9.2 s, about 7 min
left``), warnings and failures in full, and the result tables at the end; ``-v`` streams every event.

On a world pinned to the CPU, runs go two at a time (``--workers``), each in its own process: part of a run is
Dagster's bookkeeping and the judge, on one core, which the other run's compute fills. A run's tables do not
depend on what runs beside it (each process keeps the pin's threads), so the workers change the time only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import closing, contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from assets.lakehouse.config import Settings, load_settings

SUMMARY_QUERIES = ("lm_eval", "activations_summary", "sae_metrics", "concept_recovery", "interpretability",
                   "interpretability_mu", "steering", "contextual", "reliability", "selection", "rank_agreement",
                   "rank_psi", "control")
IOI_CHECK = "patching_model_solves_ioi"
GPU_POOL = "gpu"
MAX_WORKERS = 8

PlanItem = tuple[str, "str | None"]


@dataclass(frozen=True)
class RunOutcome:
    """One finished run: its wall time, and the line of a patching refusal or the report of a failure."""

    label: str
    seconds: float
    refusal: str | None = None
    error: str | None = None


def _instance():
    from dagster import DagsterInstance

    os.environ.setdefault("DAGSTER_HOME", str(Path("dagster_home").resolve()))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    return DagsterInstance.get()


def demo_plan(settings: Settings) -> list[PlanItem]:
    """(job, partition key) in order: the world, each model's chain, each valid (model, variant), the catalog."""
    from assets.lakehouse.registry import valid_pairs
    from assets.shared.partitions import pair_key

    return ([("world", None)] + [("model_chain", m.slug) for m in settings.registry]
            + [("sae_sweep", pair_key(m, v)) for m, v in valid_pairs(settings)] + [("catalog_refresh", None)])


def label_of(item: PlanItem) -> str:
    job, partition = item
    return f"{job}[{partition}]" if partition else job


def _waits_for(item: PlanItem, plan: list[PlanItem]) -> set[str]:
    """The runs ``item`` reads the results of: a model's chain the world, an SAE its model's chain, the catalog
    every other run."""
    job, partition = item
    if job == "model_chain":
        return {"world"}
    if job == "sae_sweep":
        return {label_of(("model_chain", partition.keys_by_dimension["model"]))}
    if job == "catalog_refresh":
        return {label_of(other) for other in plan if other != item}
    return set()


def default_workers(settings: Settings) -> int:
    """Runs at a time: one per ``threads`` cores, and at least two, on a world pinned to the CPU; one where the
    steps share an accelerator (the ``gpu`` pool holds one step at a time there)."""
    from assets.shared.resources import torch_device

    pin = settings.cpu_pin
    if pin is None or torch_device() != "cpu":
        return 1
    return min(MAX_WORKERS, max(2, len(os.sched_getaffinity(0)) // pin.threads))


def run_demo(instance=None, print_fn: Callable[[str], None] = print, verbose: bool = False,
             workers: int | None = None) -> dict[str, float]:
    """Run every job of ``demo_plan``; returns the wall time of each run in seconds. A given ``instance`` (an
    in-memory one, say) runs everything in this process, one run at a time."""
    from assets.definitions import defs

    settings = load_settings()
    if notice := settings.oracle_notice():
        print_fn(notice)
    plan = demo_plan(settings)
    if instance is not None or (workers or default_workers(settings)) == 1:
        instance = instance or _instance()
        _add_partitions(instance, settings)
        outcomes = (_execute(instance, defs, settings, item, verbose) for item in plan)
        return _follow(outcomes, plan, print_fn, workers=1)
    workers = workers or default_workers(settings)
    instance = _instance()
    _add_partitions(instance, settings)
    with (_pool_slots(instance, GPU_POOL, workers), _passive_wait(workers * settings.reproducibility.threads),
          closing(_in_workers(plan, workers, verbose)) as outcomes):
        return _follow(outcomes, plan, print_fn, workers)


def _follow(outcomes: Iterator[RunOutcome], plan: list[PlanItem], print_fn: Callable[[str], None],
            workers: int) -> dict[str, float]:
    """One line per finished run; a refusal is one line and the demo goes on, a failure stops it."""
    timings: dict[str, float] = {}
    for outcome in outcomes:
        timings[outcome.label] = outcome.seconds
        if outcome.refusal:
            print_fn(outcome.refusal)
        if outcome.error:
            raise SystemExit(outcome.error)
        todo = [item for item in plan if label_of(item) not in timings]
        left = _eta(timings, todo, workers) if todo else "done"
        print_fn(f"[{len(timings)}/{len(plan)}] {outcome.label} {outcome.seconds:.1f} s, {left}")
    return timings


def _execute(instance, defs, settings: Settings, item: PlanItem, verbose: bool) -> RunOutcome:
    job, partition = item
    quiet = {} if verbose else {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    start = time.perf_counter()
    job_def = defs.resolve_job_def(job)
    result = job_def.execute_in_process(instance=instance, partition_key=partition, run_config=quiet,
                                        raise_on_error=False,
                                        asset_selection=_asset_selection(job_def, settings, partition))
    seconds = time.perf_counter() - start
    refusal, error = (None, None) if result.success else _failure(result, label_of(item))
    return RunOutcome(label_of(item), seconds, refusal, error)


# --- runs in worker processes ---------------------------------------------------------------------------------

_WORKER: dict = {}


def _start_worker() -> None:
    """A worker's first act: the code location's load (the CPU pin's kernels, before torch), then the instance."""
    from assets.definitions import defs

    _WORKER.update(defs=defs, settings=load_settings(), instance=_instance())


def _run_in_worker(job: str, partition: str | dict | None, verbose: bool) -> RunOutcome:
    import dagster as dg

    key = dg.MultiPartitionKey(partition) if isinstance(partition, dict) else partition
    return _execute(_WORKER["instance"], _WORKER["defs"], _WORKER["settings"], (job, key), verbose)


def _in_workers(plan: list[PlanItem], workers: int, verbose: bool) -> Iterator[RunOutcome]:
    """Each run in the first free worker as soon as the runs it reads have finished, in the plan's order; after
    a failure no new run starts, the running ones finish, and the failure is the last outcome."""
    pending, running, done = list(plan), {}, set()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker) as pool:
        while pending or running:
            while len(running) < workers and (item := _next_ready(pending, plan, done)):
                pending.remove(item)
                job, partition = item
                sent = dict(partition.keys_by_dimension) if hasattr(partition, "keys_by_dimension") else partition
                running[pool.submit(_run_in_worker, job, sent, verbose)] = item
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: plan.index(running[f])):
                outcome = _outcome(future, running.pop(future))
                done.add(outcome.label)
                if outcome.error:
                    pending.clear()
                yield outcome


def _next_ready(pending: list[PlanItem], plan: list[PlanItem], done: set[str]) -> PlanItem | None:
    return next((item for item in pending if _waits_for(item, plan) <= done), None)


def _outcome(future: Future, item: PlanItem) -> RunOutcome:
    try:
        return future.result()
    except Exception as exc:  # the worker process itself died (killed, out of memory)
        return RunOutcome(label_of(item), 0.0, error=f"demo: run {label_of(item)} failed: {exc!r}")


@contextmanager
def _pool_slots(instance, pool: str, slots: int) -> Iterator[None]:
    """The ``pool``'s limit raised to ``slots`` while the demo's workers run (each holds one step of it at a
    time), and put back as it was after."""
    storage = instance.event_log_storage
    before = storage.get_concurrency_info(pool).slot_count if pool in storage.get_concurrency_keys() else None
    if before is not None and before >= slots:
        yield
        return
    storage.set_concurrency_slots(pool, slots)
    try:
        yield
    finally:
        if before is None:
            storage.delete_concurrency_limit(pool)
        else:
            storage.set_concurrency_slots(pool, before)


@contextmanager
def _passive_wait(threads: int) -> Iterator[None]:
    """More compute threads than cores: OpenMP's idle threads sleep instead of spinning, so that one worker's
    waiting threads do not take the cores the other's are computing on (the workers inherit it)."""
    if threads <= len(os.sched_getaffinity(0)) or "OMP_WAIT_POLICY" in os.environ:
        yield
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        yield
    finally:
        del os.environ["OMP_WAIT_POLICY"]


# --- the plan's runs ------------------------------------------------------------------------------------------

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


def _eta(timings: dict[str, float], todo: list[PlanItem], workers: int = 1) -> str:
    """Time left, from the mean time of each job's runs so far shared among the workers; jobs not yet timed are
    named instead."""
    by_job: dict[str, list[float]] = {}
    for label, seconds in timings.items():
        by_job.setdefault(label.split("[")[0], []).append(seconds)
    jobs = [job for job, _ in todo]
    left = sum(sum(by_job[job]) / len(by_job[job]) for job in jobs if job in by_job) / workers
    untimed = sorted({job for job in jobs if job not in by_job})
    if not left:
        return f"{', '.join(untimed)} not timed yet"
    estimate = f"about {left / 60:.0f} min left" if left >= 90 else f"about {left:.0f} s left"
    return estimate + (f" (+ {', '.join(untimed)}, not timed yet)" if untimed else "")


def _failure(result, label: str) -> tuple[str | None, str | None]:
    """(refusal, error) of a failed run. A run that failed only because its model does not solve IOI is a
    refusal, not an error: everything else of the run landed, the patching report leaves the model out, and the
    demo goes on with one line. Any other failure stops the demo with every failed step's root cause."""
    failed = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    if failed and all(IOI_CHECK in e.step_key for e in failed):
        refusals = {e.event_specific_data.description for e in result.all_events
                    if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed}
        return f"demo: {label}: not patched: {'; '.join(sorted(refusals))}", None
    errors = [f"  {e.step_key}: {_root_cause(e.step_failure_data.error)}" for e in failed]
    return None, "\n".join([f"demo: run {label} failed (run {result.run_id}; `make ui` shows its events)", *errors])


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
