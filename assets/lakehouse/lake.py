"""The lake: Hive-style folders of Parquet, written atomically.

``lake/<table>/model=<slug>[/sae=<variant>]/part-*.parquet``. A partition is built in ``lake/_staging`` and
renamed into place, so a crash leaves the old partition or the new one, never half of either, and a
rerun replaces the partition instead of adding to it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

STAGING = "_staging"
SETTINGS_RECORD = "_settings.json"  # what a partition was built from (see assets/lakehouse/fingerprints.py)
CATALOG = "catalog.duckdb"
NON_TABLES = {STAGING, "models", "saes", "reports"}  # folders that hold files other than tables


class Lake:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, table: str, **keys: str) -> Path:
        out = self.root / table
        for key, value in keys.items():
            out = out / f"{key}={value}"
        return out

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG

    def tables(self) -> list[str]:
        """Top-level folders that hold Parquet files, i.e. the catalog's views."""
        if not self.root.is_dir():
            return []
        return sorted(
            d.name for d in self.root.iterdir()
            if d.is_dir() and d.name not in NON_TABLES and not d.name.startswith((".", "_"))
            and next(d.rglob("*.parquet"), None) is not None
        )

    def partitions(self, table: str, key: str) -> list[str]:
        base = self.path(table)
        return sorted(p.name.split("=", 1)[1] for p in base.glob(f"{key}=*")) if base.is_dir() else []

    @contextmanager
    def replace(self, table: str, record: dict | None = None, **keys: str) -> Iterator[Path]:
        """Yield an empty staging folder; on success it becomes ``path(table, **keys)``, replacing what
        was there, with ``record`` (the settings it was built from) as ``_settings.json``. On an exception
        the staging folder is removed and the lake is unchanged."""
        target = self.path(table, **keys)
        restore_interrupted(target)
        remove_abandoned_staging(self.root / STAGING)
        staging = self.root / STAGING / f"{socket.gethostname()}~{os.getpid()}~{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if record is not None:
            (staging / SETTINGS_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True))
        swap_in(staging, target)

    def write_table(self, table: str, data: pa.Table | list, record: dict | None = None, **keys: str) -> Path:
        """Atomically (re)write one partition as a single Parquet file, in the table's declared schema
        (``data``: a table, or rows as dataclasses or dicts), with its settings ``record``."""
        from assets.lakehouse.tables import spec

        declared = spec(table)
        if tuple(keys) != declared.keys:
            raise ValueError(f"lake table {table}: partition keys {tuple(keys)} != declared {declared.keys}")
        data = declared.conform(data)
        with self.replace(table, record, **keys) as staging:
            pq.write_table(data, staging / "part-00000.parquet", compression="zstd")
        return self.path(table, **keys)

    def write_file(self, folder: str, name: str, data: bytes) -> Path:
        """Atomically (re)write one file, e.g. a report figure, under ``folder``."""
        target = self.root / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return target

    def read_split(self, split: str) -> pa.Table:
        """Documents of one corpus split (doc_id, text, labels...): lm_train, lm_eval or activation."""
        import pyarrow.compute as pc

        corpus = self.read_table("corpus")
        return corpus.filter(pc.equal(corpus.column("split"), split))

    def stamp(self, table: str) -> tuple:
        """The identity of a table's files (name, inode, size, mtime): it changes whenever the table is
        rewritten, so a process can keep what it derived from the table until then."""
        files = sorted(self.path(table).rglob("*.parquet"))
        return tuple((str(f), s.st_ino, s.st_size, s.st_mtime_ns) for f in files for s in [f.stat()])

    def read_table(self, table: str, **keys: str) -> pa.Table:
        path = self.path(table, **keys)
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"lake table {table} {keys or ''}: nothing at {path} (materialize it first)")
        return pa.concat_tables(pq.read_table(f, partitioning=None) for f in files)


def swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and then deleted.

    Between the two renames the old data sits at ``.<target>.old-*``; ``restore_interrupted`` puts it back
    if a crash happened exactly there.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    if old.exists():  # out of the table's folder before the slow delete: DuckDB's globs see hidden folders too
        trash = staging.with_name(f"{staging.name}.trash")
        old.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


def remove_abandoned_staging(staging_root: Path) -> None:
    """Delete the staging folders of processes of this machine that died before swapping them in (a SIGKILL,
    an out-of-memory kill). Folders of live processes, and of other machines sharing the lake, are left."""
    host = socket.gethostname()
    for folder in staging_root.glob(f"{host}~*~*") if staging_root.is_dir() else []:
        pid = folder.name.split("~")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def restore_interrupted(target: Path) -> bool:
    """Put back the old data of a swap that crashed between its two renames; True if it did."""
    leftovers = sorted(target.parent.glob(f".{target.name}.old-*")) if target.parent.is_dir() else []
    restored = False
    for old in leftovers:
        if not target.exists():
            old.rename(target)
            restored = True
        else:
            shutil.rmtree(old, ignore_errors=True)
    return restored
