import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assets.lakehouse.lake import Lake, remove_abandoned_staging, restore_interrupted
from sae_models.activation_store import ActivationReader, ActivationStoreError, write_shards
from sae_models.lm.extract import ActivationBatch
from sae_models.sae.metrics import DownstreamMetrics, HeldOutSplit, ReconstructionMetrics

METRICS = [f.name for cls in (ReconstructionMetrics, HeldOutSplit, DownstreamMetrics) for f in dataclasses.fields(cls)]


def _batches(n_batches=6, rows=500, d=8, seed=0):
    rng = np.random.default_rng(seed)
    for b in range(n_batches):
        ids = np.arange(b * rows, (b + 1) * rows)
        yield ActivationBatch(ids, (ids % 50).astype(np.int32), (ids % 97).astype(np.int32),
                              0.01 * rng.standard_normal((rows, d)).astype(np.float32) + ids[:, None])


def test_shards_round_trip_with_many_row_groups(tmp_path):
    stats = write_shards(_batches(), tmp_path, d_model=8, dtype="float32", row_group_mb=0.01)
    reader = ActivationReader(tmp_path)
    assert stats.rows == reader.n_rows == 3000 and reader.d_model == 8
    assert len(reader.units) >= 3 and stats.shards >= 1
    rows = np.concatenate([b.numpy() for b in reader.batches(100, seed=1)])
    assert rows.shape == (3000, 8)
    # each row's offset is its doc id: every row comes back exactly once
    assert sorted(np.round(rows.mean(1)).astype(int).tolist()) == list(range(3000))


def test_reader_is_deterministic_by_seed_and_shuffles_across_shards(tmp_path):
    write_shards(_batches(), tmp_path, d_model=8, dtype="float16", row_group_mb=0.01)
    reader = ActivationReader(tmp_path)
    first = next(reader.batches(256, seed=3))
    assert torch_equal(first, next(reader.batches(256, seed=3)))
    assert not torch_equal(first, next(reader.batches(256, seed=4)))
    assert not torch_equal(first, next(reader.batches(256, seed=3, epoch=1)))
    ids = np.round(first.numpy().mean(1))
    assert ids.max() - ids.min() > 1000  # a batch mixes far-apart row groups


def _doc_batches(n_docs=400, tokens_per_doc=10, d=8):
    """Documents of 10 tokens each; every row's activation is its document id."""
    ids = np.repeat(np.arange(n_docs), tokens_per_doc)
    acts = np.repeat(ids[:, None], d, axis=1).astype(np.float32)
    for chunk in np.array_split(np.arange(len(ids)), 7):
        yield ActivationBatch(ids[chunk], (chunk % tokens_per_doc).astype(np.int32), np.zeros(len(chunk), np.int32),
                              acts[chunk])


def _docs(reader) -> list[int]:
    return [int(d) for keys, _ in reader.rows(("doc_id",)) for d in keys["doc_id"]]


@pytest.mark.parametrize("row_group_mb", [0.01, 0.05])
def test_split_holds_out_a_tenth_of_the_documents_whole_whatever_the_row_groups(tmp_path, row_group_mb):
    write_shards(_doc_batches(), tmp_path, d_model=8, dtype="float32", row_group_mb=row_group_mb)
    reader = ActivationReader(tmp_path)
    assert len(reader.units) >= 3
    train, held = reader.split(0.1)
    train_docs, held_docs = _docs(train), _docs(held)
    assert set(train_docs).isdisjoint(held_docs)  # no document is cut between the sides
    assert sorted(train_docs + held_docs) == sorted(_docs(reader))  # every row exactly once
    assert held.n_docs == len(set(held_docs)) and train.n_rows == len(train_docs)
    assert 0.06 < len(set(held_docs)) / 400 < 0.14  # 40 of 400 expected (binomial sd 6)
    assert min(held_docs) < 100 and max(held_docs) > 300  # spread over the corpus, not its tail
    batch_ids = np.concatenate([b.numpy()[:, 0] for b in held.batches(10)])
    assert set(batch_ids.astype(int).tolist()) <= set(held_docs)
    assert sorted(set(held_docs)) == sorted(set(_expected_held_out()))  # the same documents at any row group size


def _expected_held_out() -> list[int]:
    from sae_models.activation_store import held_out_documents

    ids = np.arange(400)
    return ids[held_out_documents(ids, 0.1)].tolist()


def test_split_refuses_a_side_without_documents(tmp_path):
    write_shards(_doc_batches(n_docs=3), tmp_path, d_model=8, dtype="float32")
    with pytest.raises(ActivationStoreError, match="held-out"):
        ActivationReader(tmp_path).split(0.01)


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_corrupt_shard_is_named(tmp_path):
    write_shards(_batches(2), tmp_path, d_model=8, dtype="float16")
    shard = next(tmp_path.glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ActivationStoreError, match=shard.name):
        ActivationReader(tmp_path)


def _lm_rows(*d_models: int) -> list[dict]:
    return [{"source": "toyworld", "family": "gemma2", "n_layers": 2, "d_model": d} for d in d_models]


def test_replace_is_atomic_and_reruns_do_not_duplicate(tmp_path):
    lake = Lake(tmp_path)
    lake.write_table("lm_eval", _lm_rows(1, 2, 3), model="m")
    lake.write_table("lm_eval", _lm_rows(1, 2, 3), model="m")
    assert lake.read_table("lm_eval", model="m").num_rows == 3
    with pytest.raises(RuntimeError), lake.replace("lm_eval", model="m") as staging:
        (staging / "part-00000.parquet").write_bytes(b"half written")
        raise RuntimeError("crash mid-write")
    assert lake.read_table("lm_eval", model="m").column("d_model").to_pylist() == [1, 2, 3]
    assert not [p for p in (tmp_path / "_staging").iterdir() if p.is_dir()]
    assert lake.tables() == ["lm_eval"] and lake.partitions("lm_eval", "model") == ["m"]


def test_a_swap_interrupted_between_renames_is_restored(tmp_path):
    lake = Lake(tmp_path)
    lake.write_table("lm_eval", _lm_rows(7), model="m")
    target = lake.path("lm_eval", model="m")
    target.rename(target.with_name(".model=m.old-deadbeef"))  # crash right after the first rename
    assert restore_interrupted(target)
    assert lake.read_table("lm_eval", model="m").column("d_model").to_pylist() == [7]


def test_only_staging_folders_of_dead_processes_are_cleared(tmp_path):
    """A writer holds a lock for as long as it lives; the kernel drops it when the writer dies, whatever its host
    name or pid namespace. A live writer's folder survives a sweep, a killed one's does not."""
    import subprocess
    import sys

    staging = tmp_path / "_staging"
    hold = ("import sys, time; from pathlib import Path; from assets.lakehouse.lake import Lake; "
            "print(Lake(Path(sys.argv[1]))._staging_folder().name, flush=True); time.sleep(120)")
    writers = [subprocess.Popen([sys.executable, "-c", hold, str(tmp_path)], stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    live, killed = (w.stdout.readline().strip() for w in writers)
    writers[1].kill()
    writers[1].wait()
    try:
        remove_abandoned_staging(staging)
        assert sorted(p.name for p in staging.iterdir() if p.is_dir()) == [live]
    finally:
        writers[0].kill()
        writers[0].wait()
    remove_abandoned_staging(staging)
    assert not [p for p in staging.iterdir() if p.is_dir()] and killed != live


def test_writes_take_the_declared_schema_whatever_the_rows_hold(tmp_path):
    """An int k in one partition and a float L1 weight in another land as the same float64 column; missing
    report columns are null; undeclared tables, wrong keys and impossible casts are refused by name."""
    lake = Lake(tmp_path)
    row = {"architecture": "topk", "level": 4, "target_l0": 4, "d_sae": 64}
    lake.write_table("sae_metrics", [row | dict.fromkeys(METRICS, 1)], model="m", sae="topk-k4")
    lake.write_table("sae_metrics", [row | {"level": 0.25, "target_l0": None} | dict.fromkeys(METRICS, 0.5)],
                     model="m", sae="relu-0.25")
    schemas = {pq.read_schema(f).field("level").type for f in lake.path("sae_metrics").rglob("*.parquet")}
    assert schemas == {pa.float64()}
    lake.write_table("lm_eval", _lm_rows(8), model="x")
    assert lake.read_table("lm_eval", model="x").column("held_out_loss").to_pylist() == [None]
    with pytest.raises(KeyError, match="lake table 'nope' is not declared"):
        lake.write_table("nope", pa.table({"x": [1]}))
    with pytest.raises(ValueError, match=r"lake table lm_eval: partition keys \(\) != declared \('model',\)"):
        lake.write_table("lm_eval", _lm_rows(1))
    with pytest.raises(ValueError, match="lake table lm_eval: does not fit its declared schema"):
        lake.write_table("lm_eval", [_lm_rows(1)[0] | {"d_model": "wide"}], model="m")


def test_a_small_reader_reads_each_row_group_once_and_yields_the_same_batches(tmp_path, monkeypatch):
    """Training reads every row group once per epoch; a reader that fits in memory keeps what it read, so the
    second epoch touches no file, and its batches are exactly those of a reader that keeps nothing."""
    import sae_models.activation_store as store
    from tests.sae_helpers import sparse_directions_data

    reader, _, _ = sparse_directions_data(tmp_path / "acts", n=6000)
    reads = []
    real_read = ActivationReader._read
    monkeypatch.setattr(ActivationReader, "_read", lambda self, *a: reads.append(a[:2]) or real_read(self, *a))
    cached = [b for epoch in (0, 1) for b in reader.batches(256, epoch=epoch)]
    assert len(reads) == len(reader.units) > 1  # the second epoch read nothing
    monkeypatch.setattr(store, "CACHE_BYTES", 0)
    uncached_reader = ActivationReader(tmp_path / "acts")
    reads.clear()
    uncached = [b for epoch in (0, 1) for b in uncached_reader.batches(256, epoch=epoch)]
    assert len(reads) == 2 * len(reader.units)
    assert len(cached) == len(uncached) and all(np.array_equal(a, b) for a, b in zip(cached, uncached, strict=True))


def test_readers_share_row_groups_read_in_this_process_and_a_rewritten_store_is_read_afresh(tmp_path, monkeypatch):
    """Every evaluation of an SAE opens its own reader over the same store: the second reader decodes no file;
    a store rewritten in place (new files under the same names) gives the new rows, not the remembered ones."""
    import pyarrow.parquet as pq

    from sae_models.activation_store import ROW_GROUPS

    monkeypatch.setattr(ROW_GROUPS, "_tables", type(ROW_GROUPS._tables)())
    write_shards(_batches(2), tmp_path / "acts", d_model=8, dtype="float32")
    decoded = []
    real = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, *a, **k: decoded.append(a) or real(self, *a, **k))

    def first_rows(reader: ActivationReader) -> np.ndarray:
        return next(reader.rows(("doc_id",)))[1].numpy()

    before = first_rows(ActivationReader(tmp_path / "acts"))
    assert decoded
    decoded.clear()
    assert np.array_equal(first_rows(ActivationReader(tmp_path / "acts")), before) and not decoded

    staging = tmp_path / "staging"
    write_shards(_batches(2, seed=1), staging, d_model=8, dtype="float32")
    for shard in staging.iterdir():
        shard.replace(tmp_path / "acts" / shard.name)
    after = first_rows(ActivationReader(tmp_path / "acts"))
    assert decoded and not np.array_equal(after, before)


def test_a_digest_ignores_judge_usage_and_repeated_cache_answers_but_not_a_changed_result(tmp_path):
    from assets.lakehouse.digest import lake_digests

    def lake(name: str, summary: dict, cache: dict) -> dict:
        for table, columns in (("steering_summary", summary), ("judge_cache", cache)):
            (tmp_path / name / table).mkdir(parents=True)
            pq.write_table(pa.table(columns), tmp_path / name / table / "part-0.parquet")
        return lake_digests(tmp_path / name)

    summary = {"g": [0.4], "judge_model": ["rules"], "judge_calls": [10], "judge_cached": [0]}
    cache = {"key": ["a", "b"], "text": ["1", "2"], "created": [1.0, 2.0]}
    first = lake("first", summary, cache)
    # the same results asked with a warmer cache, one answer written twice (two runs that missed it at once)
    beside = lake("beside", {**summary, "judge_calls": [4], "judge_cached": [6]},
                  {"key": ["a", "b", "b"], "text": ["1", "2", "2"], "created": [1.0, 3.0, 4.0]})
    assert beside == first and first["judge_cache"].endswith("(2 rows)")
    changed = lake("changed", {**summary, "g": [0.5]}, {"key": ["a", "b"], "text": ["1", "0"], "created": [1.0, 2.0]})
    assert changed["steering_summary"] != first["steering_summary"] and changed["judge_cache"] != first["judge_cache"]
