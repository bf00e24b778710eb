"""Many processes on one object-store lake (moto in server mode on loopback, one request at a time as S3 applies
conditional writes): two writers racing for a partition, three appending to and compacting the judge cache, a dead
writer beside a live one with its host name and pid, and readers of a table rewritten without pause."""

import hashlib
import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from assets.lakehouse.lake import Lake
from assets.lakehouse.objectstore import MANIFEST, LeaseError, WritePolicy
from assets.lakehouse.sql import build_catalog, read_query
from assets.lakehouse.tables import spec
from tests.store_helpers import hold_after_upload

ROWS = 100
PARTITION = "sae_training/model=m/sae=a"
QUERY = "select count(*) as n, min(loss) as lo, max(loss) as hi from sae_training"
SPAWN = multiprocessing.get_context("spawn")


def _two_files(staging: Path, loss: float) -> None:
    """Two files of one version: a reader that mixes versions sees lo != hi."""
    table = spec("sae_training").conform([dict(step=i, loss=loss, mse=0.0, l0=1.0, aux=0.0, lr=0.1,
                                               dead_fraction=0.0) for i in range(ROWS)])
    for name in ("part-00000.parquet", "part-00001.parquet"):
        pq.write_table(table, staging / name)


def _lake(url: str, cache: Path, **policy) -> Lake:
    return Lake(url, cache=cache, policy=WritePolicy(**{"lease_s": 10.0, "lease_wait_s": 0.0, "retain_s": 60.0,
                                                         **policy}))


def _racer(url: str, cache: str, me: int, rounds: int, barrier, attempted, results) -> None:
    """Round after round, try to write the partition at the same moment as the other racer. The one that gets
    the lease holds it until the other has tried, so every round is a real race."""
    lake = _lake(url, Path(cache))
    for round_ in range(rounds):
        barrier.wait()
        try:
            with lake.replace("sae_training", model="m", sae="a") as staging:
                attempted[me].set()
                attempted[1 - me].wait(30)
                _two_files(staging, round_ * 10 + me)
            results.put((round_, me, os.getpid(), "won"))
        except LeaseError as exc:
            attempted[me].set()
            results.put((round_, me, os.getpid(), str(exc)))
        barrier.wait()


def _poll(reader: Lake, other: Lake, stop: threading.Event, seen: list) -> None:
    """Read the table through ``sae-lake sql`` and the partition through another machine's mirror, until told;
    an error is recorded as what was seen."""
    while not stop.is_set():
        try:
            seen.append(("sql", *read_query(reader, QUERY, attempts=1).to_pylist()[0].values()))
            table = other.read_table("sae_training", model="m", sae="a")
            losses = table.column("loss").to_pylist()
            seen.append(("mirror", table.num_rows, min(losses), max(losses)))
        except Exception as exc:  # noqa: BLE001 - any failure is a finding
            seen.append(("error", repr(exc)))


def test_two_processes_race_for_one_partition_twenty_times(s3_lake, tmp_path):
    """Every round exactly one racer writes the partition, whole; the other fails with one line naming the
    winner; readers polling all along never see a mix of versions."""
    rounds = 20
    setup = _lake(s3_lake, tmp_path / "setup")
    with setup.replace("sae_training", model="m", sae="a") as staging:
        _two_files(staging, -1.0)
    build_catalog(setup, ["sae_training"], [])
    barrier, results = SPAWN.Barrier(3), SPAWN.Queue()
    attempted = [SPAWN.Event(), SPAWN.Event()]
    racers = [SPAWN.Process(target=_racer, args=(s3_lake, str(tmp_path / f"racer-{i}"), i, rounds, barrier,
                                                 attempted, results)) for i in (0, 1)]
    for racer in racers:
        racer.start()
    stop, seen = threading.Event(), []
    reader = threading.Thread(target=_poll, args=(_lake(s3_lake, tmp_path / "reader"),
                                                  _lake(s3_lake, tmp_path / "other"), stop, seen))
    reader.start()
    try:
        for round_ in range(rounds):
            barrier.wait(timeout=120)
            barrier.wait(timeout=120)
            outcome = sorted((results.get(timeout=30) for _ in racers), key=lambda r: r[-1] != "won")
            (_, winner, winner_pid, won), (_, _, _, message) = outcome
            assert won == "won" and f"{PARTITION}: being written by host" in message, outcome
            assert f"pid {winner_pid} " in message, outcome
            losses = set(setup.read_table("sae_training", model="m", sae="a").column("loss").to_pylist())
            assert losses == {round_ * 10.0 + winner}, (round_, outcome)  # exactly the winner's output
            for event in attempted:
                event.clear()
    finally:
        stop.set()
        reader.join(60)
        for racer in racers:
            racer.join(60)
    assert all(racer.exitcode == 0 for racer in racers)
    torn = [s for s in seen if s[0] == "error" or s[1:] != (2 * ROWS, s[2], s[2])]
    print(f"{len(seen)} reads during {rounds} races, {len(torn)} torn")
    assert len(seen) > rounds and not torn, torn[:5]


def _judge(url: str, cache: str, me: int, seconds: float, log: str) -> None:
    """Append answers to the judge cache for ``seconds`` and reopen it now and then (which compacts it once it
    has more than 4 segments); every answer flushed is logged, with a hash of its text."""
    from sae_models.judges.cache import JudgeCache
    from sae_models.judges.protocol import Completion

    root, fs = _lake(url, Path(cache)).judge_cache_location("judge_cache")
    deadline, i = time.monotonic() + seconds, 0
    with open(log, "w") as out:
        while time.monotonic() < deadline:
            cache = JudgeCache(root, "toyworld", "rules", flush_every=1000, compact_at=4, fs=fs)
            batch = {}
            for _ in range(1 + i % 7):
                key, text = f"{me}-{i}", f"answer {i} of writer {me}"
                cache.put(key, "detection", Completion(text, 10, 1))
                batch[key] = hashlib.sha256(text.encode()).hexdigest()
                i += 1
            cache.flush()
            out.write("".join(json.dumps([k, h]) + "\n" for k, h in batch.items()))
            out.flush()


def test_three_processes_append_to_and_compact_the_judge_cache_and_lose_nothing(s3_lake, tmp_path):
    from sae_models.judges.cache import JudgeCache

    seconds = 30.0
    judges = [SPAWN.Process(target=_judge, args=(s3_lake, str(tmp_path / f"judge-{i}"), i, seconds,
                                                 str(tmp_path / f"judge-{i}.log"))) for i in range(3)]
    for judge in judges:
        judge.start()
    for judge in judges:
        judge.join(seconds + 120)
    assert [judge.exitcode for judge in judges] == [0, 0, 0]
    written = dict(json.loads(line) for i in range(3) for line in (tmp_path / f"judge-{i}.log").open())
    root, fs = _lake(s3_lake, tmp_path / "check").judge_cache_location("judge_cache")
    cache = JudgeCache(root, "toyworld", "rules", compact_at=10**9, fs=fs)  # a fresh reader, merging nothing
    segments = len(fs.glob(f"{cache.directory}/part-*.parquet"))
    print(f"{len(written)} answers by 3 writers in {seconds:.0f} s, {segments} segments left after compactions")
    assert len(written) > 300 and segments < len(written) / 4  # many flushes, many merged away
    held = {key: hashlib.sha256(cache.get(key).text.encode()).hexdigest() for key in written if cache.get(key)}
    assert held == written  # every answer, with its text
    rows = sum(pq.read_metadata(fs.open(path)).num_rows for path in fs.glob(f"{cache.directory}/part-*.parquet"))
    print(f"{rows} rows for {len(written)} answers: {rows - len(written)} left twice by compactions that overlapped")


def test_a_dead_writer_with_a_live_writers_host_and_pid(s3_lake, tmp_path, monkeypatch):
    """Two containers share a host name and each runs its writer as pid 4242 in its own pid namespace (simulated
    here in one process). The dead one's uploads stay while its lease runs and are removed by the writer that
    takes over after it expires; the live one's are never touched, by a writer on the same "machine" or not."""
    import socket

    monkeypatch.setattr(socket, "gethostname", lambda: "pod")
    monkeypatch.setattr(os, "getpid", lambda: 4242)
    lake = _lake(s3_lake, tmp_path / "mirror", lease_s=4.0)
    dead = lake.store.acquire(PARTITION)
    dead.stop()  # killed: renews nothing, cleans nothing
    dead_key = f"{PARTITION}/v00000001-{dead.token[:12]}/part-00000.parquet"
    lake.store.write_bytes(dead_key, b"half")
    with pytest.raises(LeaseError, match="being written by host pod, pid 4242"):
        lake.store.acquire(PARTITION)
    assert dead_key.split("/", 3)[-1] in lake.store.listing(PARTITION)  # its lease runs: its keys stay

    time.sleep(5.1)
    live = lake.store.acquire(PARTITION)  # same host, same pid, another namespace
    assert set(lake.store.listing(PARTITION)) == {MANIFEST}  # the dead one's upload removed
    staged = tmp_path / "staged"
    staged.mkdir()
    _two_files(staged, 7.0)
    uploaded, release = hold_after_upload(lake.store, monkeypatch)
    committing = threading.Thread(target=live.commit, args=(staged,))
    committing.start()
    assert uploaded.wait(30)
    time.sleep(4.5)  # longer than lease_s: the live writer keeps renewing
    live_keys = set(lake.store.listing(PARTITION))
    with pytest.raises(LeaseError, match="being written by host pod, pid 4242"):
        _lake(s3_lake, tmp_path / "another-machine").store.acquire(PARTITION)
    assert set(lake.store.listing(PARTITION)) >= live_keys and len(live_keys) == 3  # untouched
    release.set()
    committing.join(30)
    assert set(lake.read_table("sae_training", model="m", sae="a").column("loss").to_pylist()) == {7.0}


def _rewriter(url: str, cache: str, seconds: float, counter) -> None:
    """Rewrite two partitions of the table back to back, without a pause, for ``seconds`` after the first round,
    keeping replaced files 2 s (``retain_s``): files the readers started on are deleted all along."""
    lake = _lake(url, Path(cache), retain_s=2.0)
    deadline = None  # counted from the first rewrite, so that the last commits come retain_s after it however slow
    while deadline is None or time.monotonic() < deadline:
        for sae in ("a", "b"):
            with lake.replace("sae_training", model="m", sae=sae) as staging:
                _two_files(staging, float(counter.value))
            with counter.get_lock():
                counter.value += 1
        deadline = deadline or time.monotonic() + seconds


def test_a_table_rewritten_without_pause_answers_every_query_on_its_first_attempt(s3_lake, tmp_path):
    """A replaced partition's keys stay ``retain_s`` (2 s here) and are then deleted by the next commit: a query
    that takes less than that (about 0.35 s here) reads its snapshot whole on its first attempt, however fast its
    table is rewritten."""
    setup = _lake(s3_lake, tmp_path / "setup")
    for sae in ("a", "b"):
        with setup.replace("sae_training", model="m", sae=sae) as staging:
            _two_files(staging, 0.0)
    build_catalog(setup, ["sae_training"], [])
    first = set(setup.store.read_manifest(PARTITION).files.values())
    counter = SPAWN.Value("i", 0)
    writer = SPAWN.Process(target=_rewriter, args=(s3_lake, str(tmp_path / "writer"), 5.0, counter))
    writer.start()
    reader, answers = _lake(s3_lake, tmp_path / "reader"), []
    while writer.is_alive():
        answers.append(read_query(reader, QUERY, attempts=1).to_pylist()[0])
    writer.join()
    print(f"{len(answers)} queries, each on its first attempt, during {counter.value} partition rewrites")
    assert writer.exitcode == 0 and counter.value >= 6 and len(answers) >= 5
    assert all(a["n"] == 4 * ROWS for a in answers)  # both partitions, each whole, every time
    manifest = reader.store.read_manifest(PARTITION)
    kept = [entry["since"] for entry in manifest.retired]
    assert max(kept) - min(kept) <= 2.0 + 1.0  # only files replaced within retain_s (the store's whole seconds)
    assert not first & set(reader.store.listing(PARTITION))  # the files the first queries read were deleted


def test_a_query_lists_only_the_tables_it_reads(s3_lake, tmp_path, monkeypatch):
    """``sae-lake sql`` on one table lists that table's prefix only, however many other tables the lake has."""
    import s3fs

    lake = _lake(s3_lake, tmp_path / "writer")
    with lake.replace("sae_training", model="m", sae="a") as staging:
        _two_files(staging, 1.0)
    for model in ("m", "n", "o"):
        lake.write_table("sae_metrics", [], model=model, sae="a")
    build_catalog(lake, ["sae_training", "sae_metrics"], [])
    calls, real = [], s3fs.S3FileSystem._call_s3

    async def counted(self, method, *args, **kwargs):
        calls.append((method, kwargs.get("Prefix", kwargs.get("Key", ""))))
        return await real(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counted)
    reader = _lake(s3_lake, tmp_path / "reader")
    reader.store.client.meta.events.register("before-call.s3", lambda model, params, **_: calls.append(
        (model.name, params.get("Key", ""))))  # the manifests' reads
    assert read_query(reader, QUERY, attempts=1).to_pylist()[0]["n"] == 2 * ROWS
    listed = [prefix for method, prefix in calls if method.startswith("list_objects")]
    kinds = {method: sum(m == method for m, _ in calls) for method, _ in calls}
    print(f"one query on one table: {len(calls)} requests {kinds}, listing {listed}")
    assert len(listed) == 1 and listed[0].split("/", 1)[1].startswith("sae_training"), listed
