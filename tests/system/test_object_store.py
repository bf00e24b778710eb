"""The lake on an S3-compatible object store (moto in server mode on loopback, started by the ``s3_server``
fixture): atomic publish, readers that never see half of one, the judge cache, and the whole toy graph."""

import itertools
import json
import os
import threading
import time

import dagster as dg
import duckdb
import pytest

from assets.lakehouse.lake import Lake
from assets.lakehouse.objectstore import MANIFEST, LeaseError, ObjectStoreError, WritePolicy
from assets.lakehouse.sql import build_catalog, read_query
from assets.lakehouse.tables import spec
from tests.conftest import S3_BUCKET
from tests.store_helpers import hold_after_upload
from tests.tiny_world import tiny_toml

ROWS = 100
QUERY = "select count(*) as n, min(loss) as lo, max(loss) as hi from sae_training"


def _write_two_files(lake: Lake, version: float) -> None:
    """One partition of two files, both of ``version``: a reader that mixes versions sees lo != hi."""
    import pyarrow.parquet as pq

    table = spec("sae_training").conform([dict(step=i, loss=version, mse=0.0, l0=1.0, aux=0.0, lr=0.1,
                                               dead_fraction=0.0) for i in range(ROWS)])
    with lake.replace("sae_training", model="m", sae="a") as staging:
        for name in ("part-00000.parquet", "part-00001.parquet"):
            pq.write_table(table, staging / name)


def _settled(lake: Lake, partition: str) -> None:
    """No lease held, and no key under the partition that its manifest does not name."""
    manifest = lake.store.read_manifest(partition)
    assert manifest.lease is None
    assert set(lake.store.listing(partition)) == {MANIFEST} | manifest.keys()


def test_a_rewrite_replaces_the_partition_and_a_failed_one_changes_nothing(s3_lake):
    lake = Lake(s3_lake)
    for version in (1.0, 2.0):
        _write_two_files(lake, version)
    lake.write_table("sae_training", [dict(step=0, loss=3.0, mse=0.0, l0=1.0, aux=0.0, lr=0.1, dead_fraction=0.0)],
                     {"fingerprint": "f"}, model="m", sae="b")
    manifest = lake.store.read_manifest("sae_training/model=m/sae=a")
    assert manifest.generation == 2 and sorted(manifest.files) == ["part-00000.parquet", "part-00001.parquet"]
    assert lake.read_table("sae_training", model="m", sae="a").num_rows == 2 * ROWS  # not 4 x: replaced
    assert lake.read_record("sae_training", model="m", sae="b") == {"fingerprint": "f"}
    assert lake.tables() == ["sae_training"] and lake.partitions("sae_training/model=m", "sae") == ["a", "b"]

    before = lake.store.read_manifest("sae_training/model=m/sae=a")
    with pytest.raises(RuntimeError, match="mid-write"), lake.replace("sae_training", model="m", sae="a") as staging:
        (staging / "part-00000.parquet").write_bytes(b"half")
        raise RuntimeError("mid-write")
    after = lake.store.read_manifest("sae_training/model=m/sae=a")
    assert (after.files, after.commit) == (before.files, before.commit)  # nothing published
    _settled(lake, "sae_training/model=m/sae=a")  # the lease let go, no key of the failed write left


def _read_during_held_publish(writer: Lake, read, version: float, monkeypatch) -> tuple[object, object]:
    """Publish ``version`` and hold it after its files are uploaded, before the manifest names them; call
    ``read()`` then, and again once the publish is let go. Returns both results."""
    uploaded, release = hold_after_upload(writer.store, monkeypatch)
    publish = threading.Thread(target=_write_two_files, args=(writer, version))
    publish.start()
    assert uploaded.wait(30)
    during = read()
    release.set()
    publish.join(30)
    monkeypatch.undo()
    return during, read()


def _sql(reader: Lake):
    return lambda: read_query(reader, QUERY, attempts=1).to_pylist()


def test_a_reader_never_sees_half_a_publish(s3_lake, monkeypatch):
    """A publish is held with its files uploaded but not yet named by the manifest: ``sae-lake sql`` reads the old
    version whole, without waiting, then the new one whole. The control, a writer that overwrites the keys a
    manifest names in place, is read half-way: the test can tell a torn read from a whole one."""
    writer = Lake(s3_lake)
    _write_two_files(writer, 1.0)
    build_catalog(writer, ["sae_training"], [])
    reader = Lake(s3_lake)
    assert read_query(reader, QUERY).to_pylist() == [{"n": 2 * ROWS, "lo": 1.0, "hi": 1.0}]

    during, after = _read_during_held_publish(writer, _sql(reader), 2.0, monkeypatch)
    assert during == [{"n": 2 * ROWS, "lo": 1.0, "hi": 1.0}] and after == [{"n": 2 * ROWS, "lo": 2.0, "hi": 2.0}]

    _write_two_files(writer, 3.0)  # then the first file overwritten in place with the one of version 2.0:
    partition = "sae_training/model=m/sae=a"
    manifest = writer.store.read_manifest(partition)
    version_2 = manifest.retired[-1]["keys"][0]  # kept for readers: [lake] retain_s
    writer.store.fs.copy(writer.store.key(f"{partition}/{version_2}"),
                         writer.store.key(f"{partition}/{manifest.files['part-00000.parquet']}"))
    assert _sql(reader)() == [{"n": 2 * ROWS, "lo": 2.0, "hi": 3.0}]  # half old, half new


def test_a_mirror_fetch_never_takes_half_a_publish(s3_lake, tmp_path, monkeypatch):
    """Another machine's copy of a partition (what asset code reads) is the old version whole while a publish is
    under way, and the new one whole after."""
    writer, other = Lake(s3_lake), Lake(s3_lake, cache=tmp_path / "other-machine")
    _write_two_files(writer, 1.0)

    def losses():
        return set(other.read_table("sae_training", model="m", sae="a").column("loss").to_pylist())

    assert losses() == {1.0}
    assert _read_during_held_publish(writer, losses, 2.0, monkeypatch) == ({1.0}, {2.0})


def _upload_one_file_then_die(lake: Lake, partition: str) -> None:
    """What a writer killed mid-upload leaves: its lease in the manifest, unrenewed, and one uploaded key."""
    lease = lake.store.acquire(partition)
    lease.stop()  # a dead process renews nothing
    lake.store.write_bytes(f"{partition}/v{lease.manifest.generation + 1:08d}-{lease.token[:12]}/part-00000.parquet",
                           b"half")


def test_a_writer_that_died_midway_is_never_read_and_the_next_one_takes_over_after_its_lease(s3_server, tmp_path,
                                                                                             monkeypatch):
    """While the dead writer's lease is fresh, a second writer is told who holds the partition; once the lease has
    gone unrenewed for half of lease_s (two missed renewals), the next writer waits it out and takes over."""
    monkeypatch.setenv("SAE_LAKE_CACHE", str(tmp_path / "mirror"))
    lake = Lake(f"s3://{S3_BUCKET}/{tmp_path.name}", policy=WritePolicy(lease_s=6.0, lease_wait_s=0.0,
                                                                        retain_s=0.0))
    partition = "sae_training/model=m/sae=a"
    _write_two_files(lake, 1.0)
    build_catalog(lake, ["sae_training"], [])
    _upload_one_file_then_die(lake, partition)
    assert read_query(lake, QUERY, attempts=1).to_pylist() == [{"n": 2 * ROWS, "lo": 1.0, "hi": 1.0}]
    with pytest.raises(LeaseError, match=rf"sae_training/model=m/sae=a: being written by host .*, pid {os.getpid()} "
                                         r"\(its lease was renewed \d+ s ago; unrenewed it expires in \d+ s\).*"
                                         r"lease_wait_s"):
        _write_two_files(lake, 2.0)
    time.sleep(4.1)  # two renewals missed: the next writer waits for the lease to expire, on the store's clock
    start = time.monotonic()
    _write_two_files(lake, 3.0)
    assert time.monotonic() - start > 0.5
    _settled(lake, partition)  # its upload deleted by the writer that took over
    assert set(lake.read_table("sae_training", model="m", sae="a").column("loss").to_pylist()) == {3.0}


def test_replaced_files_are_kept_for_readers_then_deleted_even_if_nobody_writes_again(s3_server, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setenv("SAE_LAKE_CACHE", str(tmp_path / "mirror"))
    lake = Lake(f"s3://{S3_BUCKET}/{tmp_path.name}", policy=WritePolicy(retain_s=2.0))
    partition = "sae_training/model=m/sae=a"
    for version in (1.0, 2.0):
        _write_two_files(lake, version)
    first = lake.store.read_manifest(partition).retired[0]["keys"]
    assert lake.expire_replaced() == 0 and set(first) <= set(lake.store.listing(partition))  # kept: retain_s
    time.sleep(2.1)
    assert lake.expire_replaced() == 2 and not set(first) & set(lake.store.listing(partition))
    _settled(lake, partition)
    assert lake.store.read_manifest(partition).retired == []


def test_a_writer_paused_past_its_lease_publishes_nothing_when_it_wakes(s3_server, tmp_path, monkeypatch):
    """The lease alone cannot stop a writer that was paused (SIGSTOP, a long GC, a lost network) and wakes after
    another took over; the conditional write of the manifest does: its commit gets 412, whether the new holder
    has committed yet or not."""
    monkeypatch.setenv("SAE_LAKE_CACHE", str(tmp_path / "mirror"))
    lake = Lake(f"s3://{S3_BUCKET}/{tmp_path.name}", policy=WritePolicy(lease_s=1.0, retain_s=0.0))
    partition = "sae_training/model=m/sae=a"
    for new_holder_commits_first in (False, True):
        paused = lake.store.acquire(partition)
        paused.stop()  # no renewals while paused
        time.sleep(2.1)
        taker = lake.store.acquire(partition)
        staged = tmp_path / f"staged-{new_holder_commits_first}"
        staged.mkdir()
        (staged / "part-00000.parquet").write_bytes(b"taker")
        if new_holder_commits_first:
            taker.commit(staged)
        with pytest.raises(LeaseError, match=r"lease was taken over by .*nothing of it was published.*lease_s"):
            paused.commit(staged)
        paused.release()
        if not new_holder_commits_first:
            taker.commit(staged)
        manifest = lake.store.read_manifest(partition)
        assert manifest.lease is None and lake.store.read_bytes(f"{partition}/{manifest.files['part-00000.parquet']}"
                                                                ) == b"taker"
        _settled(lake, partition)


def test_letting_go_after_a_commit_undoes_nothing(s3_lake, tmp_path):
    """A failure after the manifest swap (the local mirror's disk full, say) must not take the commit back."""
    lake = Lake(s3_lake)
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "part-00000.parquet").write_bytes(b"new")
    lease = lake.store.acquire("sae_training/model=m/sae=a")
    committed = lease.commit(staged)
    lease.release()
    manifest = lake.store.read_manifest("sae_training/model=m/sae=a")
    assert (manifest.commit, manifest.lease) == (committed.commit, None)
    assert lake.store.read_bytes(f"sae_training/model=m/sae=a/{manifest.files['part-00000.parquet']}") == b"new"


def test_a_checkpoint_push_that_died_blocks_neither_resumption_nor_readers(s3_lake, tmp_path):
    """Training pushes its checkpoint to the store; a push killed mid-upload must not stop the rerun's fetch of the
    last whole checkpoint, its next push, nor ``sae-lake sql`` from reading the tables."""
    lake = Lake(s3_lake, policy=WritePolicy(lease_s=2.0))
    _write_two_files(lake, 1.0)
    build_catalog(lake, ["sae_training"], [])
    where = {"model": "m", "sae": "a"}
    local = lake.path("_checkpoints", **where)
    local.mkdir(parents=True)
    (local / "checkpoint.safetensors").write_bytes(b"step 10")
    lake.push("_checkpoints", **where)
    _upload_one_file_then_die(lake, "_checkpoints/model=m/sae=a")
    assert read_query(lake, QUERY, attempts=1).to_pylist() == [{"n": 2 * ROWS, "lo": 1.0, "hi": 1.0}]
    other = Lake(s3_lake, cache=tmp_path / "resuming-machine")
    fetched = other.fetch("_checkpoints", **where)
    assert (fetched / "checkpoint.safetensors").read_bytes() == b"step 10"
    # the resumed step's next push waits out the dead pusher's lease (lease_wait_s 30 s by default), then lands
    (fetched / "checkpoint.safetensors").write_bytes(b"step 20")
    other.push("_checkpoints", **where)
    assert (Lake(s3_lake, cache=tmp_path / "third").fetch("_checkpoints", **where) / "checkpoint.safetensors"
            ).read_bytes() == b"step 20"
    _settled(lake, "_checkpoints/model=m/sae=a")  # the old checkpoint deleted at once: only mirrors read it


def test_the_store_enforces_conditional_writes(s3_lake):
    """The lease is only as good as the store's conditional writes: a stale If-Match and an If-None-Match on a key
    that exists both get 412 Precondition Failed from the test server."""
    from botocore.exceptions import ClientError

    store = Lake(s3_lake).store
    where = store._object("probe")
    etag = store.client.put_object(**where, Body=b"1", IfNoneMatch="*")["ETag"]
    store.client.put_object(**where, Body=b"2", IfMatch=etag)
    for condition in ({"IfMatch": etag}, {"IfNoneMatch": "*"}):  # the ETag went stale with the second write
        with pytest.raises(ClientError) as refused:
            store.client.put_object(**where, Body=b"3", **condition)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert store.read_bytes("probe") == b"2"


def test_a_store_that_ignores_conditional_writes_is_refused(s3_lake, monkeypatch):
    from assets.lakehouse.objectstore import ObjectStore

    lake = Lake(s3_lake)
    monkeypatch.setattr(ObjectStore, "_honoured", set())
    monkeypatch.setattr(ObjectStore, "_put", lambda self, relative, body, if_match: (  # writes, whatever the
        self.write_bytes(relative, body), '"etag"')[1])                                 # condition
    with pytest.raises(ObjectStoreError, match=r"sae_training/model=m/sae=a: the store at http://127\.0\.0\.1.* "
                                               r"ignores conditional writes .*\[lake\] root"):
        _write_two_files(lake, 1.0)
    assert not lake.store.listing("sae_training")  # nothing written


def test_a_lease_stamped_in_the_stores_future_is_one_clear_error(s3_lake):
    from assets.lakehouse.objectstore import Manifest

    store = Lake(s3_lake, policy=WritePolicy(lease_s=60.0)).store
    assert not store._expired("sae_training/model=m/sae=a", Manifest(lease={"host": "h", "pid": 1, "lease_s": 60.0},
                                                                     age_s=-30.0))
    with pytest.raises(LeaseError, match=r"sae_training/model=m/sae=a: the store stamped the partition's lease 90 s "
                                         r"in its own future .*\[lake\] lease_s = 60"):
        store._expired("sae_training/model=m/sae=a", Manifest(lease={"host": "h", "pid": 1, "lease_s": 60.0},
                                                              age_s=-90.0))


def test_a_query_whose_files_expired_under_it_runs_again_on_a_fresh_snapshot(s3_lake, monkeypatch):
    """A query that outlived ``retain_s`` finds a file of its snapshot deleted: it reads the manifests again and
    runs once more; when every attempt loses a file, the error names the setting to raise."""
    from assets.lakehouse.sql import ReadQueryError

    lake = Lake(s3_lake)
    _write_two_files(lake, 1.0)
    build_catalog(lake, ["sae_training"], [])
    expired = [uri.replace("/v0000", "/gone/v0000") for uri in lake.parquet_files("sae_training")]
    real, calls = Lake.parquet_files, []

    def stale_first(self, table):
        calls.append(table)
        return expired if len(calls) == 1 else real(self, table)

    monkeypatch.setattr(Lake, "parquet_files", stale_first)
    assert read_query(lake, QUERY, attempts=2).to_pylist() == [{"n": 2 * ROWS, "lo": 1.0, "hi": 1.0}]
    assert len(calls) == 2  # pinned (its files gone before the view could read them), then pinned again
    pins = []
    monkeypatch.setattr(Lake, "parquet_files", lambda self, table: pins.append(table) or real(self, table))
    with pytest.raises(ReadQueryError, match="nope"):  # the query's own error: raised at once, not retried
        read_query(lake, "select nope from sae_training", attempts=5)
    assert pins == ["sae_training"]
    gone = itertools.count()  # each snapshot's files expire before the query reads them
    monkeypatch.setattr(Lake, "parquet_files", lambda self, table: [
        uri.replace("/v0000", f"/gone-{next(gone)}/v0000") for uri in real(self, table)])
    with pytest.raises(ReadQueryError, match=r"during each of 2 attempts.*\[lake\] retain_s = 600"):
        read_query(lake, QUERY, attempts=2)


def test_a_missing_bucket_is_one_clear_error(s3_server):
    with pytest.raises(ObjectStoreError, match=r"s3://no-such-bucket-here: no such bucket at http://127\.0\.0\.1"):
        Lake("s3://no-such-bucket-here/lake").tables()


def test_the_mirror_follows_the_store(s3_lake, tmp_path):
    """Models, SAEs and activations load from a local mirror: fetched when the store's copy changed, by any
    process, and emptied when it is gone."""
    lake, other = Lake(s3_lake), Lake(s3_lake, cache=tmp_path / "other-machine")
    with lake.replace("saes", model="m", sae="a") as staging:
        (staging / "cfg.json").write_text('{"v": 1}')
    local = other.fetch("saes", model="m", sae="a")
    assert json.loads((local / "cfg.json").read_text()) == {"v": 1} and local != lake.path("saes", model="m", sae="a")
    with lake.replace("saes", model="m", sae="a") as staging:
        (staging / "cfg.json").write_text('{"v": 2}')
    assert json.loads((other.fetch("saes", model="m", sae="a") / "cfg.json").read_text()) == {"v": 2}
    lake.remove("saes", model="m", sae="a")
    assert not other.fetch("saes", model="m", sae="a").exists()


def test_the_judge_cache_lives_in_the_store(s3_lake):
    from sae_models.judges.cache import JudgeCache
    from sae_models.judges.protocol import Completion

    lake = Lake(s3_lake)
    root, fs = lake.judge_cache_location("judge_cache")
    cache = JudgeCache(root, "toyworld", "rules", flush_every=5, fs=fs)
    for i in range(12):
        cache.put(f"k{i}", "detection", Completion(f"answer {i}", 10, 1))
    cache.flush()
    segments = [k for k in lake.store.listing("judge_cache") if k.endswith(".parquet")]
    assert len(segments) == 3 and not [k for k in lake.store.listing("judge_cache") if k.rsplit("/")[-1][0] == "."]
    again = JudgeCache(root + "/", "toyworld", "rules", compact_at=2, fs=fs)  # another process, merging
    assert len(again) == 12 and again.get("k7").text == "answer 7"
    assert len([k for k in lake.store.listing("judge_cache") if k.endswith(".parquet")]) == 1


def test_httpfs_without_the_extension_is_one_clear_error(s3_lake):
    lake = Lake(s3_lake, duckdb_s3="httpfs")
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false")
    installed = con.execute("SELECT installed FROM duckdb_extensions() WHERE extension_name = 'httpfs'").fetchall()
    if installed and installed[0][0]:
        assert lake.configure_duckdb(con) == "httpfs"
    else:
        with pytest.raises(ObjectStoreError, match=r'duckdb_s3 = "httpfs".*not installed.*"fsspec"'):
            lake.configure_duckdb(con)
        assert Lake(s3_lake).configure_duckdb(duckdb.connect()) == "fsspec"  # auto: what this machine can do


def test_whole_toy_graph_on_the_object_store(tiny_config, s3_lake, monkeypatch, capsys):
    """The demo with ``SAE_LAKE_ROOT=s3://...``: every run and check succeeds, every table lands in the store (none
    on the local disk but the mirror), and ``sae-lake sql`` answers from it."""
    from assets.cli import main as cli
    from assets.demo import run_demo
    from assets.lakehouse.tables import TABLES

    monkeypatch.setenv("SAE_LAKE_ROOT", s3_lake)
    # both models with one TopK SAE each: every asset and table, and two models' partitions side by side, through
    # the store; the disk lake's whole-graph test runs the twin and the other architectures through the same calls
    tiny_config.write_text(tiny_toml({"sweep": {"architectures": ["topk"], "baselines": []}}, twins=False))
    start = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        run_demo(instance=instance, print_fn=lambda _: None)
        runs = instance.get_runs()
        assert runs and all(r.is_success for r in runs)
        checks = [e for r in runs for e in instance.all_logs(r.run_id)
                  if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
        # 2 x 3 activation checks, 12 SAE checks x 2 dictionaries, 2 patching checks, instrument_validity's and
        # proxies'
        assert len(checks) == 34 and all(e.dagster_event.event_specific_data.passed for e in checks)
    print(f"demo on the object store: {time.perf_counter() - start:.0f}s")
    assert not (tiny_config.parent / "lake").exists()

    lake = Lake(s3_lake)
    keys = lake.store.listing()
    assert set(lake.tables()) == set(TABLES)  # every declared table
    assert "catalog.duckdb" in keys and "reports/report.md" in keys
    assert not [k for k in keys if k.startswith(("_staging", "_probe"))]
    checkpoints = lake.store.manifests({k: e for k, e in keys.items() if k.startswith("_checkpoints/")})
    assert checkpoints and all(m.files == {} for m in checkpoints.values())  # removed at the end: tombstones
    for partition, manifest in lake.store.manifests(keys).items():  # every lease let go, no key unaccounted for
        assert manifest.lease is None and {k for k in keys if k.startswith(partition + "/")} == {
            f"{partition}/{k}" for k in manifest.keys() | {MANIFEST}}, partition
    assert {tuple(k.split("/")[1:3]) for k in keys if k.startswith("saes/")} == {
        ("model=toy-gemma2", "sae=topk-k4"), ("model=toy-qwen2", "sae=topk-k4")}
    for folder in ("models", "lm_eval", "activations"):  # each model's partition beside the other's
        assert {k.split("/")[1] for k in keys if k.startswith(f"{folder}/")} == {"model=toy-gemma2", "model=toy-qwen2"}

    capsys.readouterr()
    assert cli(["sql", "select model, count(*) as n from activations group by 1 order by 1", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["model,n", "toy-gemma2,1500", "toy-qwen2,1500"]
    assert cli(["sql", "select count(*) as n from sae_summary where mu is not null and g is not null",
                "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "2"
