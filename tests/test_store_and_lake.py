import numpy as np
import pyarrow as pa
import pytest

from assets.lake import Lake, restore_interrupted
from sae_models.activation_store import ActivationReader, ActivationStoreError, write_shards
from sae_models.lm.extract import ActivationBatch


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


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_corrupt_shard_is_named(tmp_path):
    write_shards(_batches(2), tmp_path, d_model=8, dtype="float16")
    shard = next(tmp_path.glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ActivationStoreError, match=shard.name):
        ActivationReader(tmp_path)


def test_replace_is_atomic_and_reruns_do_not_duplicate(tmp_path):
    lake = Lake(tmp_path)
    table = pa.table({"x": [1, 2, 3]})
    lake.write_table("t", table, model="m")
    lake.write_table("t", table, model="m")
    assert lake.read_table("t", model="m").num_rows == 3
    with pytest.raises(RuntimeError), lake.replace("t", model="m") as staging:
        (staging / "part-00000.parquet").write_bytes(b"half written")
        raise RuntimeError("crash mid-write")
    assert lake.read_table("t", model="m").column("x").to_pylist() == [1, 2, 3]
    assert not any((tmp_path / "_staging").iterdir())
    assert lake.tables() == ["t"] and lake.partitions("t", "model") == ["m"]


def test_a_swap_interrupted_between_renames_is_restored(tmp_path):
    lake = Lake(tmp_path)
    lake.write_table("t", pa.table({"x": [7]}), model="m")
    target = lake.path("t", model="m")
    target.rename(target.with_name(".model=m.old-deadbeef"))  # crash right after the first rename
    assert restore_interrupted(target)
    assert lake.read_table("t", model="m").column("x").to_pylist() == [7]
