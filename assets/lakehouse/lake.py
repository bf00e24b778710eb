"""The lake: Hive-style folders of Parquet, written atomically, on a local disk or an object store.

``<root>/<table>/model=<slug>[/sae=<variant>]/part-*.parquet``. A partition is built in a local staging folder
and then swapped in whole: on a local disk by renames, on an object store (``s3://bucket/prefix``) by publishing
it (assets/lakehouse/objectstore.py). A crash leaves the old partition or the new one, never half of either,
and a rerun replaces the partition instead of adding to it.

With an object-store root, ``root`` is a local mirror of what this process read or wrote (``[lake] cache``):
models, SAEs and activations are loaded from there, fetched again whenever the store's copy changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from assets.lakehouse.objectstore import (
    MANIFEST,
    VERSION_FOLDER,
    LeaseError,
    Manifest,
    ObjectStore,
    ObjectStoreError,
    WritePolicy,
    is_object_store,
)

SETTINGS_RECORD = "_settings.json"  # what a partition was built from (see assets/lakehouse/fingerprints.py)
MIRROR_RECORD = ".mirrored.json"  # in a mirrored partition: the store's commit it was copied from
STAGING = "_staging"  # local folders being written, before they are swapped in
CATALOG = "catalog.duckdb"
NON_TABLES = {STAGING, "models", "saes", "reports", "feature_dashboards"}  # folders that hold files other than tables
DuckdbS3 = Literal["auto", "fsspec", "httpfs"]


class Lake:
    """``root``: the lake folder, or ``s3://bucket/prefix`` with ``cache`` the folder its local mirror lives in,
    ``duckdb_s3`` how DuckDB reads it (``fsspec``: s3fs registered on the connection; ``httpfs``: DuckDB's own
    extension, which must be installed; ``auto``: httpfs when it is) and ``policy`` how its writers share it."""

    def __init__(self, root: str | Path, cache: Path | None = None, duckdb_s3: DuckdbS3 = "auto",
                 policy: WritePolicy | None = None):
        self.url = str(root)
        self.store = ObjectStore(self.url, policy) if is_object_store(root) else None
        self.duckdb_s3 = duckdb_s3
        self.root = mirror_folder(self.url, cache) if self.store else Path(root)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lake) and (self.url, self.root) == (other.url, other.root)

    def __hash__(self) -> int:
        return hash((self.url, self.root))

    @staticmethod
    def relative(table: str, **keys: str) -> str:
        return "/".join([table, *(f"{key}={value}" for key, value in keys.items())])

    def path(self, table: str, **keys: str) -> Path:
        """The partition's local folder: in the lake, or in the mirror of an object-store lake."""
        return self.root / self.relative(table, **keys)

    def uri(self, table: str, **keys: str) -> str:
        """Where the partition lives, as a user would address it (a path, or an s3:// URL)."""
        return self.store.uri(self.relative(table, **keys)) if self.store else str(self.path(table, **keys))

    def parquet_files(self, table: str) -> str | list[str]:
        """What DuckDB's ``read_parquet`` reads for ``table``: on a disk, a glob of its Parquet files; on an object
        store, the keys its partitions' manifests name now (a snapshot: those keys are never overwritten)."""
        if not self.store:
            return (self.path(table) / "**" / "*.parquet").as_posix()
        return sorted(self.store.uri(k) for k in self._current(table, for_duckdb=True) if k.endswith(".parquet"))

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG

    def tables(self) -> list[str]:
        """Top-level folders that hold Parquet files, i.e. the catalog's views."""
        if self.store:  # from one listing, no manifest read: committed Parquet files, bar a table's first write
            listing = self.store.listing()
            managed = {n.split("/", 1)[0] for n in listing if n.rsplit("/", 1)[-1] == MANIFEST}
            names = {n.split("/", 1)[0] for n in listing if n.endswith(".parquet") and (
                n.split("/", 1)[0] in managed or not _in_commit_folder(n))}
        else:
            folders = [d for d in self.root.iterdir() if d.is_dir()] if self.root.is_dir() else []
            names = {d.name for d in folders if _is_table(d.name) and next(d.rglob("*.parquet"), None)}
        return sorted(n for n in names if _is_table(n))

    def partitions(self, table: str, key: str) -> list[str]:
        if self.store:
            found = self.store.manifests(self.store.listing(table), table)
            folders = {p[len(table) + 1:].split("/", 1)[0] for p, m in found.items() if m.files}
        else:
            base = self.path(table)
            folders = {p.name for p in base.iterdir() if p.is_dir()} if base.is_dir() else set()
        return sorted(f.split("=", 1)[1] for f in folders if f.startswith(f"{key}="))

    @contextmanager
    def replace(self, table: str, record: dict | None = None, **keys: str) -> Iterator[Path]:
        """Yield an empty staging folder; on success it becomes ``path(table, **keys)``, replacing what
        was there, with ``record`` (the settings it was built from) as ``_settings.json``. On an exception
        the staging folder is removed and the lake is unchanged. On an object store the partition's lease is
        taken first, so a second writer of the partition fails before it starts (``ObjectStore.acquire``)."""
        target = self.path(table, **keys)
        if not self.store:
            restore_interrupted(target)
        staging, lease = self._staging_folder(), None
        try:
            lease = self.store.acquire(self.relative(table, **keys)) if self.store else None
            yield staging
            if record is not None:
                (staging / SETTINGS_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True))
            if lease:  # what only mirrors read (models, SAEs, checkpoints) is kept no longer than its commit
                committed = lease.commit(staging, None if _is_table(table) else 0.0)
                (staging / MIRROR_RECORD).write_text(json.dumps(_mirror_record(committed)))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if lease:
                lease.release()
            raise
        with self._mirror_lock(target):
            swap_in(staging, target)

    def write_table(self, table: str, data: pa.Table | list, record: dict | None = None, **keys: str) -> str:
        """Atomically (re)write one partition as a single Parquet file, in the table's declared schema
        (``data``: a table, or rows as dataclasses or dicts), with its settings ``record``; returns its uri."""
        from assets.lakehouse.tables import spec

        declared = spec(table)
        if tuple(keys) != declared.keys:
            raise ValueError(f"lake table {table}: partition keys {tuple(keys)} != declared {declared.keys}")
        data = declared.conform(data)
        with self.replace(table, record, **keys) as staging:
            pq.write_table(data, staging / "part-00000.parquet", compression="zstd")
        return self.uri(table, **keys)

    def write_file(self, folder: str, name: str, data: bytes) -> str:
        """Atomically (re)write one file, e.g. a report figure, under ``folder``; returns its uri."""
        if self.store:
            self.store.write_bytes(f"{folder}/{name}", data)
            return self.store.uri(f"{folder}/{name}")
        target = self.root / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return str(target)

    def fetch(self, folder: str, **keys: str) -> Path:
        """The partition's local folder, up to date: for an object-store lake, the files its manifest names,
        copied into the mirror when the mirror holds another commit (and removed there when the store has none)."""
        target = self.path(folder, **keys)
        if not self.store:
            return target
        relative = self.relative(folder, **keys)
        for _ in range(5):
            manifest = self.store.read_manifest(relative)
            with self._mirror_lock(target):
                if not manifest or not manifest.files:
                    shutil.rmtree(target, ignore_errors=True)
                    return target
                if _mirrored(target) == _mirror_record(manifest):
                    return target
                staging = self._staging_folder()
                try:
                    self.store.download(relative, manifest, staging)
                    (staging / MIRROR_RECORD).write_text(json.dumps(_mirror_record(manifest)))
                except FileNotFoundError:  # replaced, and its keys expired, since the manifest was read
                    shutil.rmtree(staging, ignore_errors=True)
                    continue
                except BaseException:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise
                swap_in(staging, target)
                return target
        raise ObjectStoreError(f"{self.uri(folder, **keys)}: rewritten during each of 5 fetches, the files each had "
                               "started on deleted before they were down (a partition rewritten faster than it "
                               "downloads; for tables, raise [lake] retain_s)")

    def push(self, folder: str, **keys: str) -> None:
        """Publish the partition's local folder as it is (an object-store lake's training checkpoints)."""
        if self.store:
            committed = self.store.publish(self.path(folder, **keys), self.relative(folder, **keys), retain_s=0.0)
            (self.path(folder, **keys) / MIRROR_RECORD).write_text(json.dumps(_mirror_record(committed)))

    def remove(self, folder: str, **keys: str) -> None:
        shutil.rmtree(self.path(folder, **keys), ignore_errors=True)
        if self.store:
            empty = self._staging_folder()
            try:
                self.store.remove(self.relative(folder, **keys), empty)
            finally:
                shutil.rmtree(empty, ignore_errors=True)

    def expire_replaced(self) -> int:
        """On an object store, delete every partition's replaced files kept longer than ``[lake] retain_s``
        (partitions being written are left to their writers); returns how many files went. Nothing to do on a
        disk, where a swap deletes the old folder."""
        if not self.store:
            return 0
        removed = 0
        for partition in self.store.manifests(self.store.listing()):
            with contextlib.suppress(LeaseError):
                removed += self.store.expire(partition)
        return removed

    def read_record(self, folder: str, **keys: str) -> dict | None:
        """The partition's ``_settings.json``, or None when it has none."""
        try:
            if self.store:
                relative = self.relative(folder, **keys)
                manifest = self.store.read_manifest(relative)
                if not manifest or SETTINGS_RECORD not in manifest.files:
                    return None
                return json.loads(self.store.read_bytes(f"{relative}/{manifest.files[SETTINGS_RECORD]}"))
            return json.loads((self.path(folder, **keys) / SETTINGS_RECORD).read_text())
        except FileNotFoundError:
            return None

    def read_split(self, split: str) -> pa.Table:
        """Documents of one corpus split (doc_id, text, labels...): lm_train, lm_eval or activation."""
        import pyarrow.compute as pc

        corpus = self.read_table("corpus")
        return corpus.filter(pc.equal(corpus.column("split"), split))

    def stamp(self, table: str) -> tuple:
        """The identity of a table's files (name and inode, size, mtime, or the commit of each partition): it
        changes whenever the table is rewritten, so a process can keep what it derived from the table until then."""
        if self.store:
            return tuple(sorted(set(self._current(table).values())))
        files = sorted(self.path(table).rglob("*.parquet"))
        return tuple((str(f), s.st_ino, s.st_size, s.st_mtime_ns) for f in files for s in [f.stat()])

    def state(self) -> tuple | None:
        """The identity of every file a catalog view can read, or None while a partition of a table on a disk is
        being swapped in (its old folder set aside as ``.<name>.old-*``); a store's commits are never half-way."""
        if self.store:
            current = self._current()
            return tuple(sorted({v for k, v in current.items() if _is_table(k.split("/", 1)[0])
                                 and k.endswith((".parquet", ".duckdb"))}))
        return _disk_state(self.root)

    def _current(self, prefix: str = "", for_duckdb: bool = False) -> dict[str, tuple]:
        """What a reader of ``prefix`` on the store reads now: key (relative to the lake) -> its identity. A
        partition's files are the keys its manifest names (identity: the commit); a key outside every partition
        (a judge cache segment, a report) is read as it is (identity: its ETag). Uploads no manifest names yet
        (or any more) are not read."""
        listing = self.store.listing(prefix, for_duckdb)
        current = {}
        for partition, manifest in self.store.manifests(listing, prefix).items():
            current |= {f"{partition}/{key}": (partition, manifest.commit) for key in manifest.files.values()}
        if for_duckdb and not {k[len(prefix):].strip("/") for k in current} <= listing.keys():
            # a manifest committed after the listing names keys it lacks, and DuckDB's lookups go by the listing
            listing = self.store.listing(prefix, for_duckdb)
        for name, etag in listing.items():
            if name.rsplit("/", 1)[-1] != MANIFEST and not _in_commit_folder(name):
                current[f"{prefix}/{name}".strip("/")] = (name, etag)
        return current

    def read_table(self, table: str, **keys: str) -> pa.Table:
        path = self.fetch(table, **keys)
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"lake table {table} {keys or ''}: nothing at {self.uri(table, **keys)} "
                                    "(materialize it first)")
        return pa.concat_tables(pq.read_table(f, partitioning=None) for f in files)

    def rows(self, table: str, **keys: str) -> list[dict]:
        """The partition's rows as dicts; none when it has not been written (a reader that shows what there is)."""
        try:
            return self.read_table(table, **keys).to_pylist()
        except FileNotFoundError:
            return []

    def publish_catalog(self, built: Path) -> str:
        """Put a catalog built at ``built`` (the local ``catalog_path``) where readers find it."""
        if self.store:
            self.store.write_bytes(CATALOG, built.read_bytes())
            return self.store.uri(CATALOG)
        return str(built)

    def fetch_catalog(self) -> Path:
        """The catalog as a local file (copied from an object-store lake when the store's one changed)."""
        if not self.store:
            return self.catalog_path
        try:
            etag = self.store.fs.info(self.store.key(CATALOG))["ETag"]
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.store.uri(CATALOG)}: no catalog yet (materialize the catalog asset)"
                                    ) from None
        seen = self.root / f".{CATALOG}.etag"
        with self._mirror_lock(self.catalog_path):
            if not (self.catalog_path.is_file() and seen.is_file() and seen.read_text() == etag):
                self.root.mkdir(parents=True, exist_ok=True)
                tmp = self.root / f".{CATALOG}.{uuid.uuid4().hex}.tmp"
                self.store.fs.get_file(self.store.key(CATALOG), str(tmp))
                os.replace(tmp, self.catalog_path)
                seen.write_text(etag)
        return self.catalog_path

    def configure_duckdb(self, con) -> str:
        """Let ``con`` read this lake's URLs; returns how (``local``, ``fsspec`` or ``httpfs``)."""
        if not self.store:
            return "local"
        mode = self.duckdb_s3
        if mode == "auto":
            installed = con.execute("SELECT installed FROM duckdb_extensions() WHERE extension_name = 'httpfs'"
                                    ).fetchall()
            mode = "httpfs" if installed and installed[0][0] else "fsspec"
        if mode == "fsspec":
            if not con.filesystem_is_registered("s3"):  # per database: every connection to a catalog shares it
                con.register_filesystem(self.store.duckdb_fs)
        else:
            _load_httpfs(con)
        return mode

    def judge_cache_location(self, folder: str) -> tuple[str, object | None]:
        """(root, fsspec filesystem or None for the local disk) of the judge cache table ``folder``."""
        if self.store:
            return self.store.key(folder), self.store.fs
        return str(self.root / folder), None

    def _staging_folder(self) -> Path:
        remove_abandoned_staging(self.root / STAGING)
        staging = self.root / STAGING / f"{process_tag(self.root / STAGING)}~{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        return staging

    @contextmanager
    def _mirror_lock(self, target: Path) -> Iterator[None]:
        """Serialises swaps of one folder between processes of this machine (always uncontended on a local
        lake, where Dagster runs one writer per partition; a mirror is filled by every reader)."""
        if not self.store:
            yield
            return
        locks = self.root / "_locks"
        locks.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(str(target).encode()).hexdigest()[:16]
        with open(locks / f"{name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


def _in_commit_folder(key: str) -> bool:
    """Whether a store key lies in one commit's folder of a partition (read only when its manifest names it)."""
    return any(VERSION_FOLDER.match(part) for part in key.split("/"))


def _mirror_record(manifest: Manifest) -> dict:
    return {"commit": manifest.commit, "files": manifest.files}


def mirror_folder(url: str, cache: Path | None) -> Path:
    """Where the local mirror of the object-store lake ``url`` lives: ``cache`` (default ``$SAE_LAKE_CACHE`` or
    ``~/.cache/sae-lake``) / bucket / prefix."""
    base = cache or Path(os.environ.get("SAE_LAKE_CACHE") or Path.home() / ".cache" / "sae-lake")
    return Path(base).expanduser() / url.removeprefix("s3://").strip("/")


def _is_table(name: str) -> bool:
    return name not in NON_TABLES and not name.startswith((".", "_"))


def _mirrored(target: Path) -> dict | None:
    try:
        return json.loads((target / MIRROR_RECORD).read_text())
    except FileNotFoundError:
        return None


def _load_httpfs(con) -> None:
    """DuckDB's httpfs with a temporary secret from the AWS variables (nothing is stored in the catalog)."""
    import duckdb

    try:
        con.execute("LOAD httpfs")
    except duckdb.Error as exc:
        raise ObjectStoreError("[lake] duckdb_s3 = \"httpfs\": DuckDB's httpfs extension is not installed here "
                               f"({str(exc).splitlines()[0]}); install it (INSTALL httpfs, needs network) or set "
                               "duckdb_s3 = \"fsspec\"") from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    options = {"KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", ""), "SECRET": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
               "REGION": os.environ.get("AWS_REGION", "us-east-1")}
    if endpoint:
        options |= {"ENDPOINT": endpoint.split("://", 1)[-1].rstrip("/"), "URL_STYLE": "path",
                    "USE_SSL": str(endpoint.startswith("https")).lower()}
    body = ", ".join(f"{k} {v if k == 'USE_SSL' else _quoted(v)}" for k, v in options.items())
    con.execute(f"CREATE OR REPLACE TEMPORARY SECRET sae_lake (TYPE s3, {body})")


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


SET_ASIDE = ".old-"  # the infix of a partition's old folder while a swap replaces it (``swap_in``)


def _disk_state(root: Path) -> tuple | None:
    state = []
    try:
        for path in sorted(root.rglob("*")):
            if path.relative_to(root).parts[0] == STAGING:
                continue
            if path.name.startswith(".") and SET_ASIDE in path.name:
                return None
            if path.suffix in (".parquet", ".duckdb"):
                stat = path.stat()
                state.append((str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns))
    except FileNotFoundError:  # a folder or file went away while it was listed: a rewrite under way
        return None
    return tuple(state)


def swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and then deleted.

    Between the two renames the old data sits at ``.<target>.old-*``; ``restore_interrupted`` puts it back
    if a crash happened exactly there.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}{SET_ASIDE}{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    if old.exists():  # out of the table's folder before the slow delete: DuckDB's globs see hidden folders too
        trash = staging.with_name(f"{staging.name}.trash")
        old.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


_PROCESS_TAGS: dict[Path, tuple[str, object]] = {}
_PROCESS_TAGS_LOCK = threading.Lock()


def process_tag(staging_root: Path) -> str:
    """This process's tag in ``staging_root``: its staging folders are named ``<tag>~*``, and it holds an
    exclusive lock on ``<tag>.lock`` until it exits. The kernel drops the lock when the process dies, however
    it dies and in whichever pid namespace it ran, so a lock that can be taken marks a dead writer."""
    with _PROCESS_TAGS_LOCK:
        if staging_root not in _PROCESS_TAGS:
            staging_root.mkdir(parents=True, exist_ok=True)
            tag = uuid.uuid4().hex[:16]
            handle = open(staging_root / f"{tag}.lock", "w")  # noqa: SIM115 - held open for the process' life
            fcntl.flock(handle, fcntl.LOCK_EX)
            _PROCESS_TAGS[staging_root] = (tag, handle)
        return _PROCESS_TAGS[staging_root][0]


def remove_abandoned_staging(staging_root: Path) -> None:
    """Delete the staging folders of processes that died before swapping them in (a SIGKILL, an out-of-memory
    kill): those whose lock (``process_tag``) can be taken. A live writer's are never touched, whatever its host
    name or pid; the locks need one kernel, so a mirror shared over NFS is outside this guarantee."""
    mine = process_tag(staging_root)
    for lock in staging_root.glob("*.lock"):
        if lock.stem == mine:
            continue
        try:
            handle = os.open(lock, os.O_RDWR)
        except FileNotFoundError:  # cleared by another process just now
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its process is alive
            os.close(handle)
            continue
        for folder in staging_root.glob(f"{lock.stem}~*"):
            shutil.rmtree(folder, ignore_errors=True)
        lock.unlink(missing_ok=True)
        os.close(handle)


def restore_interrupted(target: Path) -> bool:
    """Put back the old data of a swap that crashed between its two renames; True if it did."""
    leftovers = sorted(target.parent.glob(f".{target.name}{SET_ASIDE}*")) if target.parent.is_dir() else []
    restored = False
    for old in leftovers:
        if not target.exists():
            old.rename(target)
            restored = True
        else:
            shutil.rmtree(old, ignore_errors=True)
    return restored
