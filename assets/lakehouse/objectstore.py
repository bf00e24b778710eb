"""The lake on an S3-compatible object store (``[lake] root = "s3://bucket/prefix"``), through s3fs.

An object store has no rename, so a partition is published in four steps: every file is uploaded under a
temporary key (``_staging/<writer>/``), a ``_publishing`` marker is put in the partition, each file is copied
server-side onto its final key (one copy is atomic: a reader gets the old object or the new one) and stale keys
are deleted, then the marker goes. ``sae-lake sql`` retries while a marker is there or a key changed under its
query, so it never returns a half-published table. Credentials and the endpoint come from the standard AWS
variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``); nothing of
them is stored.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

SCHEME = "s3://"
PUBLISHING = "_publishing"  # in a partition while its files are being replaced
STAGING = "_staging"


def is_object_store(root: str | os.PathLike) -> bool:
    return str(root).startswith(SCHEME)


class ObjectStoreError(RuntimeError):
    """The object store refused or could not be reached; the message names the key and the endpoint."""


def endpoint() -> str:
    """The endpoint the AWS variables point at, for error messages."""
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") or "AWS's default endpoint"


def _s3fs():
    try:
        import s3fs
    except ImportError:
        raise ObjectStoreError("an s3:// lake needs s3fs: pip install 'sae-lake[scale]'") from None
    return s3fs


_duckdb_fs = None
_duckdb_fs_lock = threading.Lock()


def duckdb_filesystem():
    """The filesystem DuckDB reads through: one per process, with a listing cache (without it DuckDB's reads of
    8 small files cost ~110 requests instead of ~18), emptied before each query by ``fresh_listings``. One
    explicit instance: fsspec's own instance cache would hand each thread a different one."""
    global _duckdb_fs
    with _duckdb_fs_lock:
        if _duckdb_fs is None:
            _duckdb_fs = _s3fs().S3FileSystem(use_listings_cache=True, skip_instance_cache=True)
        return _duckdb_fs


class ObjectStore:
    """Keys under ``s3://bucket/prefix``, addressed by lake-relative paths such as ``saes/model=m/sae=s``.

    One writer per partition at a time, as Dagster schedules them: two runs materializing the same partition
    at once could interleave their publishes."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.base = self.url.removeprefix(SCHEME)
        self.bucket = self.base.split("/", 1)[0]
        # no listing cache: another process may have published since
        self.fs = _s3fs().S3FileSystem(use_listings_cache=False, skip_instance_cache=True)

    @property
    def duckdb_fs(self):
        return duckdb_filesystem()

    def fresh_listings(self) -> None:
        self.duckdb_fs.invalidate_cache()

    def key(self, relative: str = "") -> str:
        return f"{self.base}/{relative}".rstrip("/")

    def uri(self, relative: str = "") -> str:
        return SCHEME + self.key(relative)

    def listing(self, relative: str = "") -> dict[str, str]:
        """Every object under ``relative``: its path relative to it -> its ETag (empty when there is none)."""
        prefix = self.key(relative)
        try:
            found = self.fs.find(prefix, detail=True)
        except FileNotFoundError:
            if not self.fs.exists(self.bucket):
                raise ObjectStoreError(f"{SCHEME}{self.bucket}: no such bucket at {endpoint()} (create it, or "
                                       "fix [lake] root)") from None
            return {}
        except Exception as exc:  # botocore's errors have no common base worth importing here
            raise ObjectStoreError(f"{SCHEME}{prefix}: cannot list at {endpoint()} ({exc}); check AWS_ENDPOINT_URL "
                                   "and the credentials") from exc
        return {name[len(prefix) + 1:]: info.get("ETag", "") for name, info in found.items()
                if info.get("type") == "file" and name.startswith(prefix + "/")}

    def read_bytes(self, relative: str) -> bytes:
        return self.fs.cat_file(self.key(relative))

    def publish(self, local: Path, relative: str) -> dict[str, str]:
        """Make ``relative`` hold exactly the files of the folder ``local`` (hidden files excepted); returns the
        new listing."""
        files = sorted(p for p in local.rglob("*") if p.is_file() and not p.name.startswith("."))
        temp = f"{STAGING}/{writer_id()}"
        self.remove_abandoned_staging()
        uploaded = []
        try:
            for path in files:
                name = path.relative_to(local).as_posix()
                self.fs.put_file(str(path), self.key(f"{temp}/{name}"))
                uploaded.append(name)
            old = self.listing(relative)
            self.fs.pipe_file(self.key(f"{relative}/{PUBLISHING}"), writer_id().encode())
            for name in uploaded:
                self.fs.copy(self.key(f"{temp}/{name}"), self.key(f"{relative}/{name}"))
            stale = [self.key(f"{relative}/{n}") for n in old if n not in uploaded and n != PUBLISHING]
            if stale:
                self.fs.rm(stale)
            self.fs.rm_file(self.key(f"{relative}/{PUBLISHING}"))
        finally:
            self._remove_keys(temp)
        return self.listing(relative)

    def write_bytes(self, relative: str, data: bytes) -> None:
        """One object, written under a temporary key and copied into place."""
        temp = f"{STAGING}/{writer_id()}/{relative.rsplit('/', 1)[-1]}"
        try:
            self.fs.pipe_file(self.key(temp), data)
            self.fs.copy(self.key(temp), self.key(relative))
        finally:
            self._remove_keys(temp)

    def download(self, relative: str, names: list[str], local: Path) -> None:
        for name in names:
            target = local / name
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(self.key(f"{relative}/{name}"), str(target))

    def remove(self, relative: str) -> None:
        self._remove_keys(relative)

    def _remove_keys(self, relative: str) -> None:
        keys = [self.key(f"{relative}/{n}") for n in self.listing(relative)]
        if self.fs.exists(self.key(relative)) and not keys:
            keys = [self.key(relative)]
        if keys:
            self.fs.rm(keys)

    def remove_abandoned_staging(self) -> None:
        """Temporary keys of writers on this machine that died before publishing (see ``writer_id``)."""
        host = socket.gethostname()
        writers = {name.split("/", 1)[0] for name in self.listing(STAGING)}
        for writer in writers:
            parts = writer.split("~")
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not alive(int(parts[1])):
                self._remove_keys(f"{STAGING}/{writer}")

    def wait_published(self, relative: str, timeout_s: float = 30.0) -> dict[str, str]:
        """The listing of ``relative`` once no publish is under way there; an error naming the partition when a
        marker outlives ``timeout_s`` (a writer that died mid-publish: materialize the partition again)."""
        deadline = time.monotonic() + timeout_s
        while True:
            listing = self.listing(relative)
            if PUBLISHING not in listing:
                return listing
            if time.monotonic() > deadline:
                writer = self._marker_writer(relative)
                raise ObjectStoreError(f"{self.uri(relative)}: a publish by {writer} started more than {timeout_s:g} s "
                                       "ago and did not finish (did it die mid-publish?); materialize this "
                                       "partition again")
            time.sleep(0.2)

    def _marker_writer(self, relative: str) -> str:
        """``host <h>, pid <p>`` of the writer whose marker is in ``relative``."""
        try:
            host, pid, _ = self.read_bytes(f"{relative}/{PUBLISHING}").decode().split("~")
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return "an unknown writer"
        return f"host {host}, pid {pid}"


def writer_id() -> str:
    """``host~pid~random``: unique per write, and tells a later writer on this machine whether we died."""
    return f"{socket.gethostname()}~{os.getpid()}~{uuid.uuid4().hex}"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
