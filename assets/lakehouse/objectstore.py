"""The lake on an S3-compatible object store (``[lake] root = "s3://bucket/prefix"``).

A partition (``saes/model=m/sae=s``) is committed the way Apache Iceberg commits a table. Its files are uploaded
under fresh keys that no reader looks at yet (``v<generation>-<writer>/<name>``), then the partition's
manifest, ``_partition.json``, which names its current files, is replaced by a conditional write (``If-Match``
the ETag this writer last saw). A reader reads the manifest, then exactly the keys it names, which are never
overwritten: it gets the old partition or the new one, never a mix, however often the partition is rewritten.

The manifest also holds the partition's lease: the writer's identity, put there by a conditional write before
the writer starts and renewed every quarter of ``lease_s``. Its age is taken on the store's clock (the
manifest's ``Last-Modified`` against the ``Date`` of the store's reply), never a local one. A second writer
waits up to ``lease_wait_s`` for a holder that keeps renewing and then fails with one line naming it; a holder
silent for half its lease is presumed dead and waited out. Once a lease has gone unrenewed for ``lease_s`` the
next writer takes it over; the old holder's commit (``If-Match`` an ETag that has changed since) then gets 412
Precondition Failed and publishes nothing, even if it wakes up later. A 412 is checked against the manifest
before it is believed: the client retries a request whose reply was lost, and the retry of a write that was
applied is refused. A store that ignores conditional writes is refused: without them nothing keeps two writers
apart.

A replaced partition's keys stay ``retain_s`` seconds for the readers that started before the commit (the bound
on a query's length that ``sae-lake sql`` relies on), then the next commit deletes them. Keys that no manifest
names, uploads of a writer that died or lost its lease, are deleted by the partition's next writer once it holds
the lease, whatever the dead writer's host name or pid.

Credentials and the endpoint come from the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``); nothing of them is stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from pathlib import Path

SCHEME = "s3://"
MANIFEST = "_partition.json"  # in each partition: its current files and its lease (its manifest)
PROBE = "_probe"  # where a process checks once that the store honours conditional writes
VERSION_FOLDER = re.compile(r"^v\d{8}-[0-9a-f]{12}$")  # the folder of one commit's files in a partition


def is_object_store(root: str | os.PathLike) -> bool:
    return str(root).startswith(SCHEME)


class ObjectStoreError(RuntimeError):
    """The object store refused or could not be reached; the message names the key and the endpoint."""


class LeaseError(ObjectStoreError):
    """A partition is held by another writer, this writer lost its hold, or the store's clock is off."""


class _Conflict(Exception):
    """The store refused a conditional write: the object changed (412), or another write to it is under way
    (409)."""


@dataclass(frozen=True)
class WritePolicy:
    """How writers of an object-store lake share it (``[lake]`` settings)."""

    lease_s: float = 60.0
    lease_wait_s: float = 30.0
    retain_s: float = 600.0


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
    """The filesystem DuckDB reads through: one per process, with a listing cache (see ``ObjectStore.listing``).
    One explicit instance: fsspec's own instance cache would hand each thread a different one."""
    global _duckdb_fs
    with _duckdb_fs_lock:
        if _duckdb_fs is None:
            _duckdb_fs = _s3fs().S3FileSystem(use_listings_cache=True, skip_instance_cache=True)
        return _duckdb_fs


@dataclass
class Manifest:
    """A partition's current files (name -> key under the partition), its lease (who writes it now, if anyone)
    and the keys of earlier commits kept for readers (each with the store time it was replaced at).
    ``etag`` and ``age_s`` (store time since it was last written) come from the reply it was read from."""

    files: dict[str, str] = field(default_factory=dict)
    generation: int = 0
    commit: str = ""
    lease: dict | None = None
    retired: list[dict] = field(default_factory=list)
    etag: str = ""
    age_s: float = 0.0

    def body(self) -> bytes:
        """Unique per write (``write``), so that an ETag is never seen twice."""
        return json.dumps({"generation": self.generation, "commit": self.commit, "files": self.files,
                           "lease": self.lease, "retired": self.retired, "write": uuid.uuid4().hex},
                          indent=1, sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes, etag: str = "", age_s: float = 0.0) -> Manifest:
        raw = json.loads(data)
        return cls(raw["files"], raw["generation"], raw["commit"], raw["lease"], raw["retired"], etag, age_s)

    def keys(self) -> set[str]:
        """Every key the manifest keeps: the current files and the retained ones."""
        return set(self.files.values()) | {key for entry in self.retired for key in entry["keys"]}


def holder(lease: dict | None) -> str:
    return f"host {lease['host']}, pid {lease['pid']}" if lease else "no writer"


class ObjectStore:
    """Keys under ``s3://bucket/prefix``, addressed by lake-relative paths such as ``saes/model=m/sae=s``."""

    def __init__(self, url: str, policy: WritePolicy | None = None):
        self.url = url.rstrip("/")
        self.base = self.url.removeprefix(SCHEME)
        self.bucket = self.base.split("/", 1)[0]
        self.policy = policy or WritePolicy()
        # no listing cache: another process may have published since
        self.fs = _s3fs().S3FileSystem(use_listings_cache=False, skip_instance_cache=True)
        self._client = None

    @property
    def duckdb_fs(self):
        return duckdb_filesystem()

    @property
    def client(self):
        """A plain botocore client, for what s3fs does not expose: conditional writes and the reply's Date."""
        if self._client is None:
            import botocore.session
            from botocore.config import Config

            # a renewal stuck longer than a fraction of the lease would let the lease run out under a live writer
            patience = max(1.0, self.policy.lease_s / 8)
            self._client = botocore.session.get_session().create_client(
                "s3", region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
                config=Config(connect_timeout=patience, read_timeout=patience, retries={"max_attempts": 2}))
        return self._client

    def key(self, relative: str = "") -> str:
        return f"{self.base}/{relative}".rstrip("/")

    def uri(self, relative: str = "") -> str:
        return SCHEME + self.key(relative)

    def _object(self, relative: str) -> dict:
        return {"Bucket": self.bucket, "Key": self.key(relative).split("/", 1)[1]}

    def listing(self, relative: str = "", for_duckdb: bool = False) -> dict[str, str]:
        """Every object under ``relative``: its path relative to it -> its ETag (empty when there is none).
        ``for_duckdb``: listed through the filesystem DuckDB reads by, whose listing cache then answers DuckDB's
        size and date lookups of those keys (without it each file a query reads costs several HEAD requests).
        Data keys are never overwritten, so what the cache says of them stays true."""
        prefix = self.key(relative)
        fs = self.duckdb_fs if for_duckdb else self.fs
        if for_duckdb:
            fs.invalidate_cache(prefix)
        try:
            found = fs.find(prefix, detail=True)
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

    def write_bytes(self, relative: str, data: bytes) -> None:
        """One object, in one PUT: a reader gets the old object or the new one."""
        self.fs.pipe_file(self.key(relative), data)

    # -- manifests ---------------------------------------------------------------------------------------------

    def read_manifest(self, partition: str) -> Manifest | None:
        """The partition's manifest as the store has it now, or None when it has none."""
        from botocore.exceptions import ClientError

        try:
            reply = self.client.get_object(**self._object(f"{partition}/{MANIFEST}"))
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None
            raise self._failed(partition, exc) from exc
        now = parsedate_to_datetime(reply["ResponseMetadata"]["HTTPHeaders"]["date"])
        return Manifest.parse(reply["Body"].read(), reply["ETag"], (now - reply["LastModified"]).total_seconds())

    def manifests(self, listing: dict[str, str], prefix: str = "") -> dict[str, Manifest]:
        """The manifests in ``listing`` (of ``prefix``), read concurrently: partition -> manifest."""
        from concurrent.futures import ThreadPoolExecutor

        partitions = [f"{prefix}/{n}".strip("/").removesuffix(MANIFEST).rstrip("/") for n in listing
                      if n.rsplit("/", 1)[-1] == MANIFEST]
        with ThreadPoolExecutor(8) as pool:  # one GET each (s3fs's cat of a list adds a HEAD per key)
            found = dict(zip(partitions, pool.map(self.read_manifest, partitions), strict=True))
        return {partition: manifest for partition, manifest in found.items() if manifest}

    def _put(self, relative: str, body: bytes, if_match: str | None) -> str:
        """Write ``body`` only if the object still has the ETag ``if_match`` (None: only if there is none);
        returns the new ETag."""
        from botocore.exceptions import ClientError

        condition = {"IfMatch": if_match} if if_match else {"IfNoneMatch": "*"}
        try:
            return self.client.put_object(**self._object(relative), Body=body, **condition)["ETag"]
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409", "404"):
                raise _Conflict from None
            raise self._failed(relative, exc) from exc

    def _failed(self, relative: str, exc: Exception) -> ObjectStoreError:
        return ObjectStoreError(f"{self.uri(relative)}: the store at {endpoint()} refused ({exc})")

    def store_time(self, partition: str) -> float:
        """The store's clock now (epoch seconds), from the Date of a reply about the partition's manifest."""
        from botocore.exceptions import ClientError

        try:
            reply = self.client.head_object(**self._object(f"{partition}/{MANIFEST}"))
        except ClientError as exc:
            reply = exc.response
        return parsedate_to_datetime(reply["ResponseMetadata"]["HTTPHeaders"]["date"]).timestamp()

    _honoured: set[str] = set()  # buckets this process found to honour conditional writes

    def require_conditional_writes(self, partition: str) -> None:
        """Refuse a store that ignores If-None-Match or If-Match: without them a lease fences nothing."""
        if self.bucket in ObjectStore._honoured:
            return
        probe = f"{PROBE}/{uuid.uuid4().hex}"
        refusal = (f"{self.uri(partition)}: the store at {endpoint()} {{}} conditional writes (If-None-Match / "
                   "If-Match), and without them nothing keeps two writers of a partition apart; point [lake] root "
                   "at a store that honours them (AWS S3, MinIO, Ceph RGW and others do)")
        try:
            self._put(probe, b"1", None)
            try:
                ignored = _accepted(lambda: self._put(probe, b"2", None)) or _accepted(
                    lambda: self._put(probe, b"3", '"0123456789abcdef0123456789abcdef"'))
            finally:
                self.fs.rm_file(self.key(probe))
        except ObjectStoreError as exc:
            raise ObjectStoreError(refusal.format(f"refused ({exc})")) from None
        if ignored:
            raise ObjectStoreError(refusal.format("ignores"))
        ObjectStore._honoured.add(self.bucket)

    # -- writing a partition -----------------------------------------------------------------------------------

    def acquire(self, partition: str) -> Lease:
        """Take the partition's lease: at once when it is free or its holder's lease expired, else after waiting
        up to ``lease_wait_s`` for it. Keys no manifest names (a dead writer's uploads) are deleted then."""
        self.require_conditional_writes(partition)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex,
              "lease_s": self.policy.lease_s}  # the holder's promise: renewed every quarter of it
        deadline = time.monotonic() + self.policy.lease_wait_s
        while True:
            current = self.read_manifest(partition)
            if current and current.lease and not self._expired(partition, current):
                # a holder renews every quarter of lease_s: one silent for half of it has most likely died (a
                # retried step after a crash), so its lease is waited out; a live holder is reported at once
                if current.age_s <= _lease_s(current) / 2 and time.monotonic() >= deadline:
                    raise LeaseError(self._held(partition, current))
                time.sleep(min(0.5, _lease_s(current) / 8))
                continue
            claimed = replace(current or Manifest(), lease=me)
            try:
                etag = self._put(f"{partition}/{MANIFEST}", claimed.body(), current.etag if current else None)
            except _Conflict:
                etag = self._ours(partition, lambda m: m.lease == me)
                if etag is None:
                    continue  # another writer got there first: read who
            lease = Lease(self, partition, claimed, etag)
            self._remove_unnamed(partition, claimed)
            return lease.start()

    def _ours(self, partition: str, mine) -> str | None:
        """The manifest's ETag if ``mine(manifest)``: a conditional write refused with 412 may be our own, applied
        once and then retried by the client after its reply was lost."""
        now = self.read_manifest(partition)
        return now.etag if now and mine(now) else None

    def _expired(self, partition: str, manifest: Manifest) -> bool:
        """Whether the holder's lease (as long as the holder's own ``lease_s``) has gone unrenewed for longer."""
        if manifest.age_s < -_lease_s(manifest):
            raise LeaseError(f"{self.uri(partition)}: the store stamped the partition's lease {-manifest.age_s:.0f} s "
                             "in its own future (its servers' clocks disagree), more than [lake] lease_s = "
                             f"{_lease_s(manifest):g}; fix the store's clocks or raise lease_s")
        return manifest.age_s > _lease_s(manifest)

    def _held(self, partition: str, manifest: Manifest) -> str:
        left = max(0.0, _lease_s(manifest) - manifest.age_s)
        waited = f"after waiting {self.policy.lease_wait_s:g} s " if self.policy.lease_wait_s else ""
        return (f"{self.uri(partition)}: being written by {holder(manifest.lease)} {waited}(its lease was renewed "
                f"{max(0.0, manifest.age_s):.0f} s ago; unrenewed it expires in {left:.0f} s); wait for that run, "
                "or raise [lake] lease_wait_s to queue behind it")

    def _remove_unnamed(self, partition: str, manifest: Manifest) -> None:
        keep = manifest.keys() | {MANIFEST}
        orphans = [self.key(f"{partition}/{n}") for n in self.listing(partition) if n not in keep]
        if orphans:
            self.fs.rm(orphans)

    def publish(self, local: Path, partition: str, retain_s: float | None = None) -> Manifest:
        """Make ``partition`` hold exactly the files of the folder ``local`` (hidden files excepted)."""
        lease = self.acquire(partition)
        try:
            return lease.commit(local, retain_s)
        except BaseException:
            lease.release()
            raise

    def expire(self, partition: str) -> int:
        """Delete the partition's replaced files kept longer than ``retain_s`` (a commit deletes those it finds,
        but a partition nobody writes again would keep them), under its lease; returns how many keys went. A
        partition being written is left to its writer's commit (``LeaseError``)."""
        current = self.read_manifest(partition)
        if not current or not current.retired or current.lease and not self._expired(partition, current):
            return 0
        now = self.store_time(partition)
        if all(now - entry["since"] < self.policy.retain_s for entry in current.retired):
            return 0
        return self.acquire(partition).prune(now)

    def download(self, partition: str, manifest: Manifest, local: Path) -> None:
        """The manifest's files into ``local``, under their names (concurrently)."""
        names = sorted(manifest.files)
        for name in names:
            (local / name).parent.mkdir(parents=True, exist_ok=True)
        remote = [self.key(f"{partition}/{manifest.files[n]}") for n in names]
        if remote:
            self.fs.get(remote, [str(local / n) for n in names])

    def remove(self, partition: str, empty: Path) -> None:
        """Empty the partition: a commit of no files (``empty``: an empty folder), under its lease, whose old
        files are deleted at once. The empty manifest stays, as the partition's tombstone."""
        current = self.read_manifest(partition)
        if current and (current.files or current.retired or current.lease):
            self.publish(empty, partition, retain_s=0.0)



class Lease:
    """One writer's hold on one partition, renewed in the background until it commits or lets go."""

    def __init__(self, store: ObjectStore, partition: str, manifest: Manifest, etag: str):
        self.store, self.partition, self.manifest, self.etag = store, partition, manifest, etag
        self.lost = False
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._uploaded: list[str] = []

    @property
    def token(self) -> str:
        return self.manifest.lease["token"]

    def start(self) -> Lease:
        threading.Thread(target=self._renew_until_stopped, daemon=True, name=f"lease {self.partition}").start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def _renew_until_stopped(self) -> None:
        while not self._stopped.wait(self.store.policy.lease_s / 4):
            with self._lock:
                if self._stopped.is_set():
                    return
                try:
                    self.etag = self.store._put(f"{self.partition}/{MANIFEST}", self.manifest.body(), self.etag)
                except _Conflict:
                    mine = self.store._ours(self.partition, lambda m: m.lease == self.manifest.lease)
                    if mine is None:
                        self.lost = True  # taken over while this process was paused: the commit will fail
                        return
                    self.etag = mine
                except Exception:  # noqa: BLE001 - the store unreachable for a moment: try again next beat
                    continue

    def commit(self, local: Path, retain_s: float | None = None) -> Manifest:
        """Upload the files of ``local`` under this commit's keys, then swap the manifest to name them, if this
        writer still holds the lease. The replaced keys are kept ``retain_s`` (default the policy's) for readers
        that started before; keys replaced longer ago are deleted."""
        store, generation = self.store, self.manifest.generation + 1
        retain_s = store.policy.retain_s if retain_s is None else retain_s
        folder = f"v{generation:08d}-{self.token[:12]}"
        files = {p.relative_to(local).as_posix(): p for p in sorted(local.rglob("*"))
                 if p.is_file() and not p.name.startswith(".")}
        keys = {name: f"{folder}/{name}" for name in files}
        self._uploaded = [store.key(f"{self.partition}/{k}") for k in keys.values()]
        if files:
            store.fs.put([str(p) for p in files.values()], self._uploaded)
        now = store.store_time(self.partition)
        retired = [*self.manifest.retired, {"keys": sorted(self.manifest.files.values()), "since": now}]
        expired = [e for e in retired if now - e["since"] >= retain_s]
        committed = replace(self.manifest, files=keys, generation=generation, commit=uuid.uuid4().hex, lease=None,
                            retired=[e for e in retired if e not in expired and e["keys"]])
        with self._lock:
            self.stop()
            try:
                if self.lost:
                    raise _Conflict
                self.etag = store._put(f"{self.partition}/{MANIFEST}", committed.body(), self.etag)
            except _Conflict:
                self.etag = store._ours(self.partition, lambda m: m.commit == committed.commit)
                if self.etag is None:
                    self.lost = True
                    raise LeaseError(self._lost_message()) from None
        self.manifest, self._uploaded = committed, []  # committed: nothing left for ``release`` to undo
        old = [store.key(f"{self.partition}/{k}") for e in expired for k in e["keys"]]
        if old:  # a failure here leaves keys the next writer deletes; the commit stands
            _quietly(lambda: store.fs.rm(old))
        return committed

    def prune(self, now: float) -> int:
        """Let go of the lease, dropping from the manifest the replaced files kept longer than ``retain_s`` as of
        the store time ``now``, then delete them; returns how many keys went."""
        expired = [e for e in self.manifest.retired if now - e["since"] >= self.store.policy.retain_s]
        pruned = replace(self.manifest, lease=None, retired=[e for e in self.manifest.retired if e not in expired])
        with self._lock:
            self.stop()
            try:
                self.store._put(f"{self.partition}/{MANIFEST}", pruned.body(), self.etag)
            except _Conflict:
                if self.store._ours(self.partition, lambda m: m.lease is None and m.retired == pruned.retired
                                    and m.commit == pruned.commit) is None:
                    self.lost = True
                    raise LeaseError(self._lost_message()) from None
            self.manifest = pruned
        keys = [self.store.key(f"{self.partition}/{k}") for e in expired for k in e["keys"]]
        if keys:
            _quietly(lambda: self.store.fs.rm(keys))
        return len(keys)

    def _lost_message(self) -> str:
        now = self.store.read_manifest(self.partition)
        taker = f"taken over by {holder(now.lease)}" if now and now.lease else "taken over by another writer"
        return (f"{self.store.uri(self.partition)}: this writer's lease was {taker} after more than [lake] lease_s "
                f"= {self.store.policy.lease_s:g} s without renewal (was this process paused, or cut off from the "
                "store?); nothing of it was published. Raise lease_s if writers pause for longer")

    def release(self) -> None:
        """Let go without committing: this writer's uploads are deleted and the lease cleared (when still ours);
        nothing to do after a commit."""
        with self._lock:
            self.stop()
            if self.manifest.lease is None:
                return
            if self._uploaded:
                _quietly(lambda: self.store.fs.rm(self._uploaded))
            if not self.lost:
                _quietly(lambda: self.store._put(f"{self.partition}/{MANIFEST}",
                                                 replace(self.manifest, lease=None).body(), self.etag))


def _lease_s(manifest: Manifest) -> float:
    return manifest.lease["lease_s"]


def _code(exc) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _accepted(write) -> bool:
    try:
        write()
    except _Conflict:
        return False
    return True


def _quietly(action) -> None:
    """Best-effort cleanup on a failure path: the error that brought us here is the one to report."""
    with contextlib.suppress(Exception):
        action()
