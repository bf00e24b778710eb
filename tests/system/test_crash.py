"""Crash tests: a run SIGKILLed in the middle of a stage (activation writing, SAE training, steered generation,
judge calls), then rerun. The rerun completes; the lake holds no partial or duplicate rows (SQL counts
against the expected) and no abandoned staging folder; training resumes from its checkpoint; finished judge
calls are not paid again."""

import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from tests.tiny_world import one_model_toml

REPO = Path(__file__).resolve().parents[2]

# Runs one job partition (a selection of its assets) in a fresh process; with a target, the process SIGKILLs
# itself right after the target's ``kill_at``-th call returns.
RUN = """
import functools, importlib, os, signal, sys
from tests.system.test_crash import run_here
job, partition, selection, target, kill_at = sys.argv[1:6]
if target != "-":
    module_name, attribute = target.split(":")
    *path, name = attribute.split(".")
    owner = functools.reduce(getattr, path, importlib.import_module(module_name))
    original, calls = getattr(owner, name), [0]

    def killing(*args, **kwargs):
        result = original(*args, **kwargs)
        calls[0] += 1
        if calls[0] == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, killing)
sys.exit(run_here(job, partition, selection))
"""


@pytest.fixture
def crash_world(tmp_path, monkeypatch):
    """A one-model toy lake.toml, a persistent instance, and ``run(job, partition, selection, target, kill_at,
    fresh)``: with a target, in a fresh process that kills itself; without, a rerun in this process (which did
    not crash either), or in a fresh one with ``fresh``, as a new run worker starts."""
    config = tmp_path / "lake.toml"
    config.write_text(one_model_toml())
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("SAE_LAKE_CONFIG", str(config))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("SAE_LAKE_ROOT", raising=False)

    def run(job: str, partition: str = "-", selection: str = "-", target: str = "-", kill_at: int = 0,
            fresh: bool = False) -> int:
        if target == "-" and not fresh:
            return run_here(job, partition, selection)
        done = subprocess.run([sys.executable, "-c", RUN, job, partition, selection, target, str(kill_at)],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode in (0, -signal.SIGKILL), done.stdout[-2000:] + done.stderr[-2000:]
        return done.returncode

    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("models", ["toy-gemma2"])
        instance.add_dynamic_partitions("saes", ["topk-k4"])
    return tmp_path / "lake", run


def run_here(job: str, partition: str, selection: str) -> int:
    from assets.definitions import defs

    key = None if partition == "-" else partition
    if key and "|" in key:
        key = dg.MultiPartitionKey(dict(zip(("model", "sae"), key.split("|"), strict=True)))
    assets = None if selection == "-" else [dg.AssetKey(a) for a in selection.split(",")]
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=key,
                                                              asset_selection=assets, raise_on_error=False)
    return 0 if result.success else 1


def _count(lake: Path, sql: str) -> tuple:
    return duckdb.sql(sql.format(lake=lake)).fetchall()[0]


def _logs(text: str) -> list[str]:
    with dg.DagsterInstance.get() as instance:
        return [e.user_message for r in instance.get_runs() for e in instance.all_logs(r.run_id)
                if text in e.user_message]


def test_sigkill_in_each_stage_then_a_rerun_loses_nothing_and_pays_nothing_twice(crash_world):
    lake, run = crash_world
    pair = "toy-gemma2|topk-k4"
    assert run("world") == 0

    # activation writing: killed after its first row group is in the staging folder
    assert run("model_chain", "toy-gemma2", "-", "sae_models.activation_store:ShardWriter._flush", 1) == -9
    assert not (lake / "activations").exists() and list((lake / "_staging").iterdir())  # only staged
    assert run("model_chain", "toy-gemma2") == 0
    n, distinct = _count(lake, "select count(*), count(distinct (doc_id, pos)) "
                               "from read_parquet('{lake}/activations/**/*.parquet')")
    assert n == distinct == 1500  # the budget, each token once

    # SAE training: killed right after its third checkpoint (step 30 of 80), then resumed there
    train = "sae,sae_training"
    assert run("sae_sweep", pair, train, "sae_models.sae.train:Trainer._checkpoint", 3) == -9
    assert run("sae_sweep", pair, train, fresh=True) == 0  # a new worker process, its code location loaded cold
    assert _logs("resumed at step") == ["resumed at step 30/80"]
    steps, distinct = _count(lake, "select count(*), count(distinct step) "
                                   "from read_parquet('{lake}/sae_training/**/*.parquet')")
    assert steps == distinct == 80

    # steered generation: killed after the first of its two generate calls
    steer = "sae_metrics,latent_stats,concept_recovery,latent_purity,latent_examples,steering_generations"
    assert run("sae_sweep", pair, steer, "sae_models.lm.generate:generate_batch", 1) == -9
    assert not (lake / "steering_generations").exists()
    assert run("sae_sweep", pair, steer) == 0
    rows, distinct = _count(lake, "select count(*), count(distinct (latent, factor, instruction_id)) "
                                  "from read_parquet('{lake}/steering_generations/**/*.parquet')")
    assert rows == distinct == 3 * 4 * 3  # concepts x instructions x (0 and the two factors)

    # judge calls: killed in the detection calls, after the explanations were answered and cached
    judge = "autointerp,interpretability"
    backend = "sae_models.judges.toyworld:ToyworldBackend.complete"
    assert run("sae_sweep", pair, judge, backend, 30) == -9
    assert not (lake / "autointerp").exists()
    assert run("sae_sweep", pair, judge) == 0
    latents, distinct = _count(lake, "select count(*), count(distinct latent) "
                                     "from read_parquet('{lake}/autointerp/**/*.parquet')")
    cached, calls = _count(lake, "select judge_cached, judge_calls "
                                 "from read_parquet('{lake}/interpretability/**/*.parquet')")
    assert latents == distinct > 0
    assert cached >= latents and calls > 0  # an explanation per latent, answered before the kill: from the cache

    assert [p for p in (lake / "_staging").iterdir() if p.is_dir()] == []  # the killed runs' were cleared
