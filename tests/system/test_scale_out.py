"""Scale-out on existing engines: the PostgreSQL instance of deploy/postgres/ under parallel runs, and Celery
workers with a GPU queue. Each server is started on loopback by its fixture and stopped after."""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from tests.tiny_world import edit_toml

REPO = Path(__file__).resolve().parents[2]
SWEEP_RUN = """
import sys
from dagster import DagsterInstance, MultiPartitionKey
from assets.definitions import defs
result = defs.resolve_job_def("sae_sweep").execute_in_process(
    instance=DagsterInstance.get(), partition_key=MultiPartitionKey({"model": "toy-gemma2", "sae": sys.argv[1]}),
    raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


def _pg_ctl(bin_dir: Path) -> str:
    """pg_ctl, wrapped to run as the ``postgres`` system user when the tests run as root (PostgreSQL refuses
    to run as root; CI machines run as root)."""
    found = shutil.which("pg_ctl") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))), None)
    if found is None:
        pytest.fail("PostgreSQL's pg_ctl is not installed (`make test` installs the postgresql package)")
    if os.geteuid() != 0:
        return found
    wrapper = bin_dir / "pg_ctl"
    wrapper.write_text(f'#!/bin/sh\nexec runuser -u postgres -- "{found}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture
def postgres():
    """A PostgreSQL server on loopback (pytest-postgresql's executor), stopped and removed afterwards. It trusts
    loopback connections (the password the instance sends is not checked)."""
    from pytest_postgresql.executors.proc import PostgreSQLExecutor
    from pytest_postgresql.janitor import DatabaseJanitor

    work = Path(tempfile.mkdtemp(prefix="sae-lake-pg-"))
    work.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(work, "postgres", "postgres")
    port = _free_port()
    server = PostgreSQLExecutor(_pg_ctl(Path(tempfile.mkdtemp(prefix="sae-lake-pgbin-"))), "127.0.0.1", port,
                                str(work / "data"), str(work), str(work / "postgres.log"), "-w", "dagster")
    server.start()
    try:
        with DatabaseJanitor(user="postgres", host="127.0.0.1", port=port, dbname="dagster"):
            yield {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_USER": "postgres",
                   "DAGSTER_PG_PASSWORD": "sae-lake-test", "DAGSTER_PG_DB": "dagster"}
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_postgres_instance_records_every_partition_once_under_parallel_runs(postgres, tiny_config, tmp_path,
                                                                           monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    for key, value in {**postgres, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(key, value)
    from assets.definitions import defs

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        variants = ["relu-0.1", "topk-k4", "gated-0.1", "pca"]
        instance.add_dynamic_partitions("models", ["toy-gemma2"])
        instance.add_dynamic_partitions("saes", variants)
        for job, partition in (("world", None), ("model_chain", "toy-gemma2")):
            assert defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition).success
        # four runs at once, each with its SAE's steps, all writing to the one instance
        runs = [subprocess.Popen([sys.executable, "-c", SWEEP_RUN, v], cwd=REPO, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for v in variants]
        outputs = [r.communicate(timeout=600)[0] for r in runs]
        assert [r.returncode for r in runs] == [0] * 4, outputs
        assert not [o for o in outputs if "database is locked" in o]
        for asset in ("sae", "sae_metrics", "autointerp", "steering_summary", "selection"):
            records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
            partitions = sorted(r.partition_key for r in records)
            expected = sorted(str(dg.MultiPartitionKey({"model": "toy-gemma2", "sae": v})) for v in variants)
            assert partitions == expected, asset  # every partition, each once
        assert all(r.is_success for r in instance.get_runs())


@pytest.fixture
def redis_url(tmp_path):
    """A Redis server on loopback (pytest-redis's executor), the Celery broker; stopped afterwards."""
    from pytest_redis.executor import RedisExecutor

    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail("redis-server is not installed (`make test` installs the redis-server package)")
    port = _free_port()
    server = RedisExecutor(executable, databases=4, redis_timeout=30, loglevel="warning", host="127.0.0.1",
                           port=port, datadir=tmp_path)
    server.start()
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.stop()


def _worker(name: str, queues: list[str], celery_yaml: Path, log: Path, mirror: Path) -> subprocess.Popen:
    """A ``dagster-celery`` worker consuming ``queues``, with its own mirror of the object-store lake (another
    machine's disk), once it is ready to take tasks."""
    import time

    bin_dir = Path(sys.executable).parent
    queue_args = ["-q", ",".join(queues)]  # one list: Celery keeps only the last of several -Q options
    worker = subprocess.Popen([str(bin_dir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                               "-y", str(celery_yaml), "-n", name, *queue_args], cwd=REPO, stdout=log.open("w"),
                              stderr=subprocess.STDOUT, start_new_session=True,
                              env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                                   "SAE_LAKE_CACHE": str(mirror)})
    for _ in range(240):
        if " ready." in log.read_text():
            return worker
        if worker.poll() is not None:
            pytest.fail(f"celery worker {name} exited: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    pytest.fail(f"celery worker {name} did not come up: {log.read_text()[-2000:]}")


def test_celery_workers_share_the_sweep_and_only_the_gpu_worker_runs_gpu_steps(postgres, redis_url, tiny_config,
                                                                                s3_lake, tmp_path, monkeypatch):
    """Two workers on loopback, each with its own mirror of a lake on the object store (two machines that share
    no disk): "gpu" consumes the gpu and default queues (a GPU machine), "cpu" the default queue only. Two SAE
    partitions materialized through them: both workers run steps, every GPU step runs on the GPU worker, and the
    store holds every table of both partitions."""
    import signal

    from assets.lakehouse.lake import Lake
    from assets.shared.execution import DEFAULT_QUEUE
    from assets.shared.resources import GPU_OP_TAGS

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    edit_toml(tiny_config, {"execution": {"executor": "celery", "broker": f"{redis_url}/0",
                                          "backend": f"{redis_url}/1"}})
    for key, value in {**postgres, "DAGSTER_HOME": str(home), "SAE_LAKE_ROOT": s3_lake}.items():
        monkeypatch.setenv(key, value)
    celery_yaml = tmp_path / "celery.yaml"
    shipped = (REPO / "deploy" / "celery" / "celery.yaml").read_text()
    celery_yaml.write_text(shipped.replace("redis://localhost:6379", redis_url))
    from assets.definitions import defs

    variants = ["topk-k4", "pca"]
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("models", ["toy-gemma2"])
        instance.add_dynamic_partitions("saes", variants)
        for job, partition in (("world", None), ("model_chain", "toy-gemma2")):  # in process: the setup
            assert defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition).success
        workers = {name: _worker(name, queues, celery_yaml, tmp_path / f"{name}.log", tmp_path / f"{name}-mirror")
                   for name, queues in (("gpu", ["gpu", DEFAULT_QUEUE]), ("cpu", [DEFAULT_QUEUE]))}
        try:
            for variant in variants:
                tags = json.dumps({"dagster/partition": f"toy-gemma2|{variant}", "dagster/partition/model":
                                   "toy-gemma2", "dagster/partition/sae": variant})
                run = subprocess.run([str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m",
                                      "assets.definitions", "-a", "defs", "-j", "sae_sweep", "--tags", tags],
                                     cwd=REPO, capture_output=True, text=True, timeout=900)
                assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        finally:
            for proc in workers.values():
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
        ran_on = {}  # step key -> worker
        for run in instance.get_runs():
            for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                data = entry.dagster_event.engine_event_data
                if "Celery worker" in (data.metadata or {}):
                    worker = data.metadata["Celery worker"].value.split("@")[0]
                    for step in data.metadata["step_keys"].value.split(", "):
                        ran_on.setdefault(step, set()).add(worker)
    gpu_ops = {node.name for node in defs.resolve_job_def("sae_sweep").graph.nodes
               if node.definition.tags.get("dagster-celery/queue") == GPU_OP_TAGS["dagster-celery/queue"]}
    assert {w for ws in ran_on.values() for w in ws} == {"gpu", "cpu"}, ran_on
    gpu_steps = {s: ws for s, ws in ran_on.items() if s in gpu_ops}
    assert gpu_steps and all(ws == {"gpu"} for ws in gpu_steps.values()), gpu_steps
    assert not (tiny_config.parent / "lake").exists()
    lake = Lake(s3_lake, cache=tmp_path / "check-mirror")
    for table in ("sae_metrics", "autointerp", "steering_summary", "selection", "patching"):
        assert lake.partitions(table, "model") == ["toy-gemma2"]
        assert lake.partitions(f"{table}/model=toy-gemma2", "sae") == sorted(variants), table
    for name in workers:  # each worker read what it needed into its own mirror
        assert any((tmp_path / f"{name}-mirror").rglob("*.parquet")), name


@pytest.mark.parametrize("executor", ["celery", "k8s"])
def test_the_code_location_loads_and_passes_dg_check_with_each_executor(tiny_config, executor):
    edit_toml(tiny_config, {"execution": {"executor": executor}})
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    check = subprocess.run([str(bin_dir / "dg"), "check", "defs"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=600)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    loaded = subprocess.run([sys.executable, "-c", "from assets.definitions import defs; print(defs.executor.name)"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert loaded.stdout.split()[-1] == {"celery": "celery", "k8s": "k8s"}[executor], loaded.stderr[-2000:]


def test_gpu_requests_node_selector_and_tolerations_are_on_the_gpu_steps_only():
    from assets.definitions import defs

    ops = [a.op for a in defs.get_repository_def().assets_defs_by_key.values() if a.is_executable]
    gpu = {op.name for op in ops if op.pool == "gpu"}
    tagged = {op.name for op in ops if "dagster-k8s/config" in op.tags or "dagster-celery/queue" in op.tags}
    assert gpu and tagged == gpu
    for op in ops:
        if op.name in gpu:
            pod = json.loads(op.tags["dagster-k8s/config"])  # non-string tags are stored as JSON
            assert pod["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
            assert pod["pod_spec_config"]["node_selector"] and pod["pod_spec_config"]["tolerations"]
            assert op.tags["dagster-celery/queue"] == "gpu"
