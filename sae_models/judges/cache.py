"""Every judge call, stored: (backend, model, prompt hash) -> completion, as Parquet segments.

A cache lives in one folder per (backend, model), on any fsspec filesystem (the local disk by default, an
object store for a shared lake); each flush writes a new segment under a temporary name and moves it into place,
so concurrent runs never clash and a crash loses at most the unflushed calls.
Reading all segments back makes a rerun answer from disk with zero new calls. The segments are ordinary
Parquet: tokens and cost are one DuckDB query away.
"""

import contextlib
import hashlib
import json
import re
import threading
import time
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from sae_models.judges.protocol import Completion, JudgeRequest

SCHEMA = pa.schema([("key", pa.string()), ("task", pa.string()), ("text", pa.string()),
                    ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()),
                    ("created", pa.timestamp("ms"))])  # Parquet stores no second-unit timestamps


def request_key(backend: str, model: str, request: JudgeRequest) -> str:
    """Content hash of everything that determines an answer."""
    body = json.dumps([backend, model, request.task, request.messages, request.max_tokens], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def folder_name(model: str) -> str:
    """A path-safe name for a model id (``gpt-4o-mini``, ``/models/qwen``), unique per id."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", model.lower()).strip("-.")[:60] or "model"
    return slug if slug == model else f"{slug}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"


class _Read:
    """What this process has read of one cache folder: the segments by name and their entries. Every SAE's
    evaluation opens the cache again; in one process (the demo runs every SAE in one) a new opening reads
    only the segments written since."""

    def __init__(self):
        self.segments: set[str] = set()
        self.entries: dict[str, Completion] = {}
        self.lock = threading.Lock()

    def clear(self) -> None:
        self.segments, self.entries = set(), {}

    def add(self, name: str, table: pa.Table) -> None:
        self.segments.add(name)
        self.entries.update({key: Completion(text, pt, ct) for key, text, pt, ct in zip(
            *(table.column(c).to_pylist() for c in ("key", "text", "prompt_tokens", "completion_tokens")),
            strict=True)})


def _first_per_key(table: pa.Table) -> pa.Table:
    """The first row of each key. Two processes compacting at once each merge the same segments, and each merged
    segment would carry those rows into every later merge: without this, duplicates compound (a two-worker demo
    left 36 million rating rows for 857,000 keys, which no process could read back into memory)."""
    rows = table.append_column("_row", pa.array(np.arange(len(table)))).group_by("key", use_threads=False)
    first = np.sort(rows.aggregate([("_row", "min")]).column("_row_min").to_numpy())
    return table if len(first) == len(table) else table.take(first)


_READ: dict[str, _Read] = {}
_READ_LOCK = threading.Lock()


class JudgeCache:
    """Segments are merged into one once there are more than ``compact_at``, so that opening a cache costs a
    few file reads however many flushes came before (the demo's 60 SAEs write thousands of segments)."""

    def __init__(self, root: str | Path, backend: str, model: str, flush_every: int = 256,
                 flush_after_s: float = 2.0, compact_at: int = 32, fs: fsspec.AbstractFileSystem | None = None):
        self.fs = fs or fsspec.filesystem("file")
        root = str(Path(root).resolve()) if isinstance(self.fs, LocalFileSystem) else str(root)
        self.directory = f"{root.rstrip('/')}/backend={backend}/model={folder_name(model)}"
        self.flush_every, self.flush_after_s = flush_every, flush_after_s  # calls, or seconds since the oldest
        self._oldest = 0.0
        self._lock = threading.Lock()
        self._pending: list[dict] = []
        self._unflushed: dict[str, Completion] = {}
        with _READ_LOCK:
            self._read = _READ.setdefault(f"{self.fs.protocol}:{self.directory}", _Read())
        with self._read.lock:
            segments = self._read_new_segments()
            if len(segments) > compact_at:
                self._compact(segments)

    def _read_new_segments(self, attempts: int = 3) -> list[str]:
        """Every segment's name; the ones not read before are read whole (all of them when none of those read
        before is left). A segment merged away by a concurrent compaction means listing again (its rows are in
        the merged one)."""
        for attempt in range(attempts):
            segments = sorted(self.fs.glob(f"{self.directory}/part-*.parquet"))
            if self._read.segments.isdisjoint(map(_name, segments)):
                self._read.clear()  # emptied, or merged by another process: read it all again
            try:
                for segment in segments:
                    if _name(segment) not in self._read.segments:
                        self._read.add(_name(segment), self._read_segment(segment))
            except FileNotFoundError:
                if attempt == attempts - 1:
                    raise
                continue
            return segments
        raise AssertionError("unreachable")

    def _read_segment(self, path: str) -> pa.Table:
        with self.fs.open(path, "rb") as handle:
            return pq.read_table(handle)

    def _compact(self, segments: list[str]) -> None:
        """One segment holding every row of ``segments``, written before they are removed, so a concurrent
        reader sees each call at least once; segments written since are left alone. A segment gone before it
        is read was merged by another process compacting at the same time, whose merged segment holds it: this
        compaction is then left to that one."""
        try:
            table = _first_per_key(pa.concat_tables([self._read_segment(s) for s in segments]).cast(SCHEMA))
        except FileNotFoundError:
            return
        self._read.segments.add(self._write_segment(table))
        for segment in segments:
            with contextlib.suppress(FileNotFoundError):  # merged away by a concurrent compaction
                self.fs.rm_file(segment)
            self._read.segments.discard(_name(segment))

    def _write_segment(self, table: pa.Table) -> str:
        """A new segment, whole or not at all: on a disk written aside and renamed; on an object store in one
        PUT (a renamed temporary key would be a copy and a delete, and a writer killed between them would leave
        the temporary key behind)."""
        name = f"part-{uuid.uuid4().hex}.parquet"
        if not isinstance(self.fs, LocalFileSystem):
            buffer = pa.BufferOutputStream()
            pq.write_table(table, buffer)
            self.fs.pipe_file(f"{self.directory}/{name}", buffer.getvalue().to_pybytes())
            return name
        self.fs.makedirs(self.directory, exist_ok=True)
        tmp = f"{self.directory}/.{name}.tmp"
        with self.fs.open(tmp, "wb") as handle:
            pq.write_table(table, handle)
        self.fs.mv(tmp, f"{self.directory}/{name}")
        return name

    def __len__(self) -> int:
        return len(self._read.entries.keys() | self._unflushed.keys())

    def get(self, key: str) -> Completion | None:
        return self._unflushed.get(key) or self._read.entries.get(key)

    def put(self, key: str, task: str, completion: Completion) -> None:
        with self._lock:
            self._unflushed[key] = completion
            self._pending.append({"key": key, "task": task, "text": completion.text,
                                  "prompt_tokens": completion.prompt_tokens,
                                  "completion_tokens": completion.completion_tokens,
                                  "created": int(time.time() * 1000)})
            if len(self._pending) == 1:
                self._oldest = time.monotonic()
            # a killed process loses at most the calls of the last flush_after_s seconds (or flush_every calls)
            if len(self._pending) >= self.flush_every or time.monotonic() - self._oldest >= self.flush_after_s:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        table = pa.Table.from_pylist(self._pending, schema=SCHEMA)
        name = self._write_segment(table)
        with self._read.lock:
            self._read.add(name, table)
        self._pending, self._unflushed = [], {}
