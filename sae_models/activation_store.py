"""Activation shards on disk: Parquet files of (doc_id, pos, token_id, act[d]) rows.

The writer streams ``ActivationBatch``es into ``part-NNNNN.parquet`` files in a directory, cutting row
groups of about ``row_group_mb`` so a training read is a few large sequential reads. The reader yields
shuffled torch batches, shuffled across shards and row groups, deterministic by seed. ``split`` holds out
whole documents, chosen by a seeded hash of the document id, so the held-out share is the configured
fraction whatever the row-group size, and no document is cut between the two sides.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from sae_models.lm.extract import ActivationBatch

ARROW_DTYPES = {"float16": pa.float16(), "float32": pa.float32()}


class ActivationStoreError(RuntimeError):
    """Unreadable or inconsistent activation shards; the message names the file."""


def activation_schema(d_model: int, dtype: str) -> pa.Schema:
    return pa.schema([
        ("doc_id", pa.int64()),
        ("pos", pa.int32()),
        ("token_id", pa.int32()),
        ("act", pa.list_(ARROW_DTYPES[dtype], d_model)),
    ])


def _to_table(batch: ActivationBatch, schema: pa.Schema) -> pa.Table:
    d = schema.field("act").type.list_size
    values = pa.array(np.ascontiguousarray(batch.act).reshape(-1), type=schema.field("act").type.value_type)
    return pa.table({
        "doc_id": pa.array(batch.doc_id, pa.int64()),
        "pos": pa.array(batch.pos, pa.int32()),
        "token_id": pa.array(batch.token_id, pa.int32()),
        "act": pa.FixedSizeListArray.from_arrays(values, d),
    }, schema=schema)


@dataclass
class WriteStats:
    rows: int = 0
    shards: int = 0
    bytes: int = 0
    dropped_outliers: int = 0


class ShardWriter:
    """Accumulates rows and writes fixed-size row groups, ``groups_per_shard`` per file."""

    def __init__(self, directory: Path, d_model: int, dtype: str = "float16",
                 row_group_mb: float = 32.0, groups_per_shard: int = 4, max_rows_per_group: int = 16384):
        self.directory = directory
        self.schema = activation_schema(d_model, dtype)
        row_bytes = d_model * (2 if dtype == "float16" else 4) + 16
        # enough row groups for a shuffled read and a held-out split even when d_model is small
        self.rows_per_group = min(max_rows_per_group, max(1024, int(row_group_mb * 2**20 / row_bytes)))
        self.groups_per_shard = groups_per_shard
        self.stats = WriteStats()
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._groups_in_shard = 0

    @property
    def rows_seen(self) -> int:
        return self.stats.rows + self._pending_rows

    def write(self, batch: ActivationBatch) -> None:
        self.stats.dropped_outliers += batch.dropped_outliers
        if len(batch) == 0:
            return
        self._pending.append(_to_table(batch, self.schema))
        self._pending_rows += len(batch)
        while self._pending_rows >= self.rows_per_group:
            self._flush(self.rows_per_group)

    def close(self) -> WriteStats:
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self._writer is not None:
            self._writer.close()
        self.stats.bytes = sum(f.stat().st_size for f in self.directory.glob("part-*.parquet"))
        return self.stats

    def _flush(self, n: int) -> None:
        table = pa.concat_tables(self._pending).combine_chunks()
        group, rest = table.slice(0, n), table.slice(n)
        self._pending, self._pending_rows = ([rest] if len(rest) else []), len(rest)
        if self._writer is None:
            path = self.directory / f"part-{self.stats.shards:05d}.parquet"
            self._writer = pq.ParquetWriter(path, self.schema, compression="zstd", compression_level=1)
            self.stats.shards += 1
        self._writer.write_table(group, row_group_size=n)
        self.stats.rows += n
        self._groups_in_shard += 1
        if self._groups_in_shard == self.groups_per_shard:
            self._writer.close()
            self._writer, self._groups_in_shard = None, 0


def write_shards(batches: Iterable[ActivationBatch], directory: Path, d_model: int,
                 dtype: str = "float16", row_group_mb: float = 32.0) -> WriteStats:
    """Stream ``batches`` into Parquet shards in ``directory`` (which should be empty)."""
    directory.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(directory, d_model, dtype, row_group_mb)
    for batch in batches:
        writer.write(batch)
    return writer.close()


def _open(path: Path) -> tuple[pq.ParquetFile, tuple]:
    """The shard and the identity of the very file opened (device, inode, size, mtime): a store rewritten
    since has new files, which the row-group cache tells apart."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (the ParquetFile owns it from here)
        stat = os.fstat(handle.fileno())
        return pq.ParquetFile(handle), (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ActivationStoreError(f"{path}: not a readable Parquet shard ({exc})") from exc


def held_out_documents(doc_ids: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """bool mask of the documents held out: a seeded 64-bit mix (splitmix64's finaliser) of each id, mapped
    to [0, 1) and compared with ``fraction``. Stable across runs, machines and row-group layouts."""
    x = doc_ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(seed + 1)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / 2.0**53 < fraction


@dataclass(frozen=True)
class DocumentSplit:
    """Which side of the held-out split a reader sees."""

    fraction: float
    seed: int
    held_out: bool

    def keep(self, doc_ids: np.ndarray) -> np.ndarray:
        return held_out_documents(doc_ids, self.fraction, self.seed) == self.held_out


CACHE_BYTES = 256 * 2**20  # a reader whose activations fit in this keeps them in memory once read


class RowGroupCache:
    """Row groups read in this process, shared by every reader, least recently used first out past ``limit``
    bytes. Every evaluation of an SAE reads its model's activations again (training, metrics, examples,
    concept recovery), and a run of many SAEs in one process (the demo) reads the same files for each: on a
    small model decoding them costs more than the evaluation. Keyed by the file's identity (inode, size,
    mtime of the file opened), so a rewritten store is read afresh."""

    def __init__(self, limit: int):
        self.limit, self.size = limit, 0
        self._tables: OrderedDict[tuple, pa.Table] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, file: pq.ParquetFile, identity: tuple, group: int, columns: list[str]) -> pa.Table:
        key = (identity, group, tuple(columns))
        with self._lock:
            if key in self._tables:
                self._tables.move_to_end(key)
                return self._tables[key]
        table = file.read_row_group(group, columns=columns)
        with self._lock:
            if key not in self._tables and table.nbytes <= self.limit:
                self._tables[key] = table
                self.size += table.nbytes
                while self.size > self.limit:
                    self.size -= self._tables.popitem(last=False)[1].nbytes
        return table


ROW_GROUPS = RowGroupCache(512 * 2**20)


class ActivationReader:
    """Shuffled training batches over every shard of one activation partition (or one side of its split)."""

    def __init__(self, directory: Path, units: list[tuple[int, int]] | None = None,
                 documents: DocumentSplit | None = None):
        self.directory = Path(directory)
        self.shards = sorted(self.directory.glob("*.parquet"))
        if not self.shards:
            raise ActivationStoreError(f"{self.directory}: no activation shards")
        self.files, self.identities = map(list, zip(*(_open(p) for p in self.shards), strict=True))
        widths = {f.schema_arrow.field("act").type.list_size for f in self.files}
        if len(widths) != 1:
            raise ActivationStoreError(f"{self.directory}: shards disagree on the activation width {widths}")
        self.d_model = widths.pop()
        all_units = [(i, g) for i, f in enumerate(self.files) for g in range(f.num_row_groups)]
        self.units = all_units if units is None else units
        self.documents = documents
        self._cache: dict[tuple[int, int], np.ndarray] = {}
        if documents is None:
            self.n_rows = sum(self.files[i].metadata.row_group(g).num_rows for i, g in self.units)
            self.n_docs = None
        else:
            ids = np.concatenate([self._read(i, g, ["doc_id"]).column("doc_id").to_numpy() for i, g in self.units])
            kept = ids[documents.keep(ids)]
            self.n_rows, self.n_docs = len(kept), len(np.unique(kept))

    def split(self, holdout_fraction: float, seed: int = 0) -> tuple[ActivationReader, ActivationReader]:
        """(train, held-out) readers: the held-out side holds the documents ``held_out_documents`` picks
        (``holdout_fraction`` of them in expectation), whole; both sides must be non-empty."""
        train, held = (ActivationReader(self.directory, self.units, DocumentSplit(holdout_fraction, seed, side))
                       for side in (False, True))
        if not train.n_rows or not held.n_rows:
            raise ActivationStoreError(f"{self.directory}: {train.n_docs} training and {held.n_docs} held-out "
                                       f"documents at holdout fraction {holdout_fraction}; both need some")
        return train, held

    def _read(self, shard: int, group: int, columns: list[str]) -> pa.Table:
        """One row group's ``columns``, only the rows of this reader's side of the split."""
        wanted = columns if self.documents is None or "doc_id" in columns else [*columns, "doc_id"]
        try:
            table = ROW_GROUPS.read(self.files[shard], self.identities[shard], group, wanted)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ActivationStoreError(f"{self.shards[shard]}: row group {group} unreadable ({exc})") from exc
        if self.documents is not None:
            table = table.filter(self.documents.keep(table.column("doc_id").to_numpy()))
        return table.select(columns)

    def rows(self, columns: tuple[str, ...] = ("doc_id", "pos")) -> Iterator[tuple[dict, torch.Tensor]]:
        """In storage order, per row group: the requested key columns (numpy) and the activations."""
        for shard, group in self.units:
            table = self._read(shard, group, [*columns, "act"])
            if not table.num_rows:
                continue
            keys = {c: table.column(c).to_numpy() for c in columns}
            yield keys, torch.from_numpy(self._acts(table).astype(np.float32))

    def _acts(self, table: pa.Table) -> np.ndarray:
        values = table.column("act").combine_chunks().flatten()  # flatten honours a slice's offset
        return values.to_numpy(zero_copy_only=False).reshape(-1, self.d_model)

    def _read_unit(self, shard: int, group: int) -> np.ndarray:
        """One row group's activations; kept in memory after the first read when the whole reader fits in
        ``CACHE_BYTES`` (a toy model's: training reads every group once per epoch, several epochs)."""
        if (shard, group) in self._cache:
            return self._cache[(shard, group)]
        acts = self._acts(self._read(shard, group, ["act"]))
        if self.n_rows * self.d_model * acts.itemsize <= CACHE_BYTES:
            self._cache[(shard, group)] = acts
        return acts

    def sample(self, tokens: int, seed: int = 0) -> torch.Tensor:
        """``tokens`` shuffled rows [tokens, d] (all rows when there are fewer): what a baseline is fit on."""
        rows, total = [], 0
        for batch in self.batches(min(4096, tokens), seed=seed):
            rows.append(batch)
            total += len(batch)
            if total >= tokens:
                break
        return torch.cat(rows)[:tokens]

    def batches(self, batch_size: int, seed: int = 0, epoch: int = 0, buffer_units: int = 4,
                dtype: torch.dtype = torch.float32) -> Iterator[torch.Tensor]:
        """One epoch of [batch_size, d] batches: row groups in a seeded random order, read ``buffer_units``
        at a time and shuffled together. The last partial batch is dropped."""
        rng = np.random.default_rng([seed, epoch])
        order = [self.units[i] for i in rng.permutation(len(self.units))]
        carry = np.empty((0, self.d_model), dtype=np.float32)
        for start in range(0, len(order), buffer_units):
            rows = np.concatenate([carry] + [self._read_unit(*u) for u in order[start:start + buffer_units]])
            rows = rows[rng.permutation(len(rows))]
            full = len(rows) // batch_size * batch_size
            for i in range(0, full, batch_size):
                yield torch.from_numpy(rows[i:i + batch_size]).to(dtype)
            carry = rows[full:]
