"""``sae-lake demo``: materialize the whole asset graph on the embedded toy world, in DAGSTER_HOME.

The runs are ordinary Dagster runs of the code location's jobs, so ``make ui`` shows them afterwards with
every event. The terminal gets one line per run (``[23/92] sae_sweep[toy-gemma2|topk-k4] 9.2 s, about 7 min
left``), warnings and failures in full, and the result tables at the end; ``-v`` streams every event.

On a world pinned to the CPU, runs go two at a time (``--workers``), each in its own process: part of a run is
Dagster's bookkeeping and the judge, on one core, which the other run's compute fills. A run's results do not
depend on what runs beside it (each process keeps the pin's threads); only the judge-usage counts do (calls
asked anew, answers from the cache), as they depend on what the cache held when the run asked.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import closing, contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

from assets.lakehouse.config import Settings, load_settings

if TYPE_CHECKING:
    from dagster import MultiPartitionKey

SUMMARY_QUERIES = ("lm_eval", "activations_summary", "sae_metrics", "concept_recovery", "interpretability",
                   "interpretability_mu", "steering", "contextual", "reliability", "selection", "rank_agreement",
                   "rank_psi", "control")
IOI_CHECK = "patching_model_solves_ioi"
GPU_POOL = "gpu"
DEMO_TAG = "sae-lake/demo"  # every run of one demo carries its id, to find the runs a dead worker left started

PlanItem = tuple[str, "str | MultiPartitionKey | None"]


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
    """The runs of ``plan`` whose results ``item`` reads: a model's chain the world's, an SAE's its model's chain,
    the catalog every other run's."""
    job, partition = item
    if job == "model_chain":
        needs = {"world"}
    elif job == "sae_sweep":
        needs = {label_of(("model_chain", partition.keys_by_dimension["model"]))}
    elif job == "catalog_refresh":
        needs = {label_of(other) for other in plan if other != item}
    else:
        needs = set()
    return needs & {label_of(other) for other in plan}


def default_workers(settings: Settings) -> int:
    """Two runs at a time on a world pinned to the CPU (measured on 2 cores: docs/benchmarks.md); one where the
    steps share an accelerator."""
    from assets.shared.resources import torch_device

    return 2 if settings.cpu_pin is not None and torch_device() == "cpu" else 1


def run_demo(instance=None, print_fn: Callable[[str], None] = print, verbose: bool = False,
             workers: int | None = None) -> dict[str, float]:
    """Run every job of ``demo_plan``; returns the wall time of each run in seconds. A given ``instance`` (an
    in-memory one, say) runs everything in this process, one run at a time."""
    from assets.definitions import defs

    settings = load_settings()
    if notice := settings.oracle_notice():
        print_fn(notice)
    plan = demo_plan(settings)
    workers = 1 if instance is not None else workers or default_workers(settings)
    instance = instance or _instance()
    _add_partitions(instance, settings)
    if workers == 1:
        runs = _one_at_a_time(instance, defs, settings, plan, verbose, uuid.uuid4().hex[:12])
        return _follow(runs, plan, print_fn, workers)
    with in_workers(instance, settings, plan, workers, verbose) as outcomes:
        return _follow(outcomes, plan, print_fn, workers)


@contextmanager
def in_workers(instance, settings: Settings, plan: list[PlanItem], workers: int,
               verbose: bool = False) -> Iterator[Iterator[RunOutcome]]:
    """The outcomes of ``plan``'s runs in ``workers`` worker processes, as they finish, with the ``gpu`` pool raised
    for them on the CPU (an accelerator stays one step at a time) and idle OpenMP threads asleep where the workers'
    pinned threads outnumber the cores."""
    from assets.shared.resources import torch_device

    demo_id = uuid.uuid4().hex[:12]
    pinned_threads = settings.cpu_pin.threads if settings.cpu_pin else 0
    slots = workers if torch_device() == "cpu" else 1
    with (_pool_slots(instance, GPU_POOL, slots, demo_id), _passive_wait(workers * pinned_threads),
          closing(_in_workers(plan, workers, verbose, demo_id)) as outcomes):
        yield outcomes


def _follow(outcomes: Iterator[RunOutcome], plan: list[PlanItem], print_fn: Callable[[str], None],
            workers: int) -> dict[str, float]:
    """One line per finished run. A refusal is one line and the demo goes on; after a failure no new run starts,
    the runs under way finish (and are reported), and the demo stops with every failure's report."""
    timings: dict[str, float] = {}
    errors: list[str] = []
    for outcome in outcomes:
        timings[outcome.label] = outcome.seconds
        if outcome.refusal:
            print_fn(outcome.refusal)
        if outcome.error:
            errors.append(outcome.error)
            print_fn(f"demo: {outcome.label} failed; no new run starts" + (
                ", the runs under way finish first" if workers > 1 else ""))
            continue
        todo = [item for item in plan if label_of(item) not in timings]
        left = _eta(timings, todo, workers) if todo else "done"
        print_fn(f"[{len(timings)}/{len(plan)}] {outcome.label} {outcome.seconds:.1f} s, {left}")
    if errors:
        raise SystemExit("\n".join(errors))
    return timings


def _one_at_a_time(instance, defs, settings: Settings, plan: list[PlanItem], verbose: bool,
                   demo_id: str) -> Iterator[RunOutcome]:
    """The plan's runs in this process, in order, up to the first failure."""
    for item in plan:
        outcome = _execute(instance, defs, settings, item, verbose, demo_id)
        yield outcome
        if outcome.error:
            return


def _execute(instance, defs, settings: Settings, item: PlanItem, verbose: bool, demo_id: str) -> RunOutcome:
    """One run of the plan, in this process; a failure becomes the outcome's report instead of an exception."""
    job, partition = item
    quiet = {} if verbose else {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    start = time.perf_counter()
    job_def = defs.resolve_job_def(job)
    result = job_def.execute_in_process(instance=instance, partition_key=partition, run_config=quiet,
                                        raise_on_error=False, tags={DEMO_TAG: demo_id},
                                        asset_selection=_asset_selection(job_def, settings, partition))
    seconds = time.perf_counter() - start
    refusal, error = (None, None) if result.success else _failure(result, label_of(item))
    return RunOutcome(label_of(item), seconds, refusal, error)


# --- runs in worker processes ---------------------------------------------------------------------------------

_WORKER: dict[str, object] = {}  # the worker process's code location, settings and instance, loaded once


def _start_worker(demo_id: str) -> None:
    """A worker's first act: the code location's load (the CPU pin's kernels, before torch), then the instance."""
    from assets.definitions import defs

    _WORKER.update(defs=defs, settings=load_settings(), instance=_instance(), demo_id=demo_id)


def _run_in_worker(job: str, partition: str | dict[str, str] | None, verbose: bool) -> RunOutcome:
    """``_execute`` in a worker; a multi-partition key comes as its dimensions (``_sendable``)."""
    import dagster as dg

    key = dg.MultiPartitionKey(partition) if isinstance(partition, dict) else partition
    return _execute(_WORKER["instance"], _WORKER["defs"], _WORKER["settings"], (job, key), verbose,
                    _WORKER["demo_id"])


def _sendable(item: PlanItem) -> tuple[str, str | dict[str, str] | None]:
    """(job, partition) as a worker can receive it: a ``MultiPartitionKey`` is a str whose dimensions do not
    survive pickling, so it travels as its dimensions."""
    job, partition = item
    keys = getattr(partition, "keys_by_dimension", None)
    return job, dict(keys) if keys is not None else partition


def _in_workers(plan: list[PlanItem], workers: int, verbose: bool, demo_id: str) -> Iterator[RunOutcome]:
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                             initargs=(demo_id,)) as pool:
        yield from _schedule(plan, workers, lambda item: pool.submit(_run_in_worker, *_sendable(item), verbose))


def _schedule(plan: list[PlanItem], workers: int, submit: Callable[[PlanItem], Future]) -> Iterator[RunOutcome]:
    """Each run submitted as soon as a worker is free and the runs it reads have finished, in the plan's order;
    after a failure no new run starts and the runs under way finish."""
    pending, running, done = list(plan), {}, set()
    while pending or running:
        while len(running) < workers and (item := _next_ready(pending, plan, done)):
            pending.remove(item)
            running[submit(item)] = item
        if not running:
            raise RuntimeError(f"demo: no run can start: {[label_of(i) for i in pending]} wait for runs not done")
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in sorted(finished, key=lambda f: plan.index(running[f])):
            outcome = _outcome(future, running.pop(future))
            done.add(outcome.label)
            if outcome.error:
                pending.clear()
            yield outcome


def _next_ready(pending: list[PlanItem], plan: list[PlanItem], done: set[str]) -> PlanItem | None:
    """The first run of ``pending`` whose runs to wait for are all done."""
    return next((item for item in pending if _waits_for(item, plan) <= done), None)


def _outcome(future: Future, item: PlanItem) -> RunOutcome:
    try:
        return future.result()
    except Exception as exc:  # the worker died (killed, out of memory) or could not start the run
        return RunOutcome(label_of(item), 0.0, error=f"demo: run {label_of(item)} failed: {exc!r}")


@contextmanager
def _pool_slots(instance, pool: str, slots: int, demo_id: str) -> Iterator[None]:
    """The ``pool``'s limit raised to ``slots`` while the demo's workers run, and put back as it was after (the
    instance's default again where it had the default). A run of this demo that a dead worker left started is
    marked failed and its slots are freed, so no later step waits for them."""
    storage = instance.event_log_storage
    before = storage.get_concurrency_info(pool)
    if before.limit is None or before.limit >= slots:  # None: the pool has no limit
        yield
        return
    storage.set_concurrency_slots(pool, slots)
    try:
        yield
    finally:
        _fail_abandoned_runs(instance, demo_id)
        if before.using_default_limit or not before.slot_count:
            storage.delete_concurrency_limit(pool)
        else:
            storage.set_concurrency_slots(pool, before.slot_count)


def _fail_abandoned_runs(instance, demo_id: str) -> None:
    import dagster as dg

    started = instance.get_runs(dg.RunsFilter(tags={DEMO_TAG: demo_id}, statuses=[dg.DagsterRunStatus.STARTED]))
    for run in started:
        instance.report_run_failed(run, "its demo worker stopped before the run ended")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)


@contextmanager
def _passive_wait(threads: int) -> Iterator[None]:
    """More compute threads than cores: OpenMP's idle threads sleep instead of spinning, so that one worker's
    waiting threads do not take the cores the other's are computing on (the workers inherit it)."""
    if threads <= _cores() or "OMP_WAIT_POLICY" in os.environ:
        yield
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        yield
    finally:
        del os.environ["OMP_WAIT_POLICY"]


def _cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
