"""What the object-store lake costs a reader and a writer, against the same lake on a local disk, measured in one
run on moto's S3 server on loopback (one request at a time, as ``tests/s3_server.py`` runs it).

Lakes of ``--tables`` tables x ``--partitions`` partitions of two small Parquet files each. Reported:
- ``sae-lake sql`` on one table: seconds and S3 requests, against the disk lake; and the whole-lake listing an
  earlier reader took twice per attempt, timed here as the floor it replaced;
- one partition commit (lease, upload, manifest swap): seconds and requests, against the disk lake's swap;
- queries while the table is rewritten without pause: how many answered on their first attempt.

Usage: ``python bench/object_store.py [--tables 12 36] [--partitions 8]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from assets.lakehouse.lake import Lake  # noqa: E402
from assets.lakehouse.sql import build_catalog, read_query  # noqa: E402
from assets.lakehouse.tables import spec  # noqa: E402

BUCKET = "sae-lake-bench"
TABLE = "sae_training"
QUERY = f"select count(*) as n, min(loss) as lo, max(loss) as hi from {TABLE}"


def start_server() -> subprocess.Popen:
    import socket

    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tests.s3_server", str(port)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    for _ in range(200):
        try:
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            return server
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.05)
    raise RuntimeError("the S3 server did not come up")


class Requests:
    """Counts the S3 requests of this process: s3fs's (reads, listings, uploads) and botocore's (manifests)."""

    def __init__(self):
        import s3fs

        self.count, self.listings, real = 0, 0, s3fs.S3FileSystem._call_s3

        async def counted(fs, method, *args, **kwargs):
            self.count += 1
            self.listings += method.startswith("list_objects")
            return await real(fs, method, *args, **kwargs)

        s3fs.S3FileSystem._call_s3 = counted

    def watch(self, lake: Lake) -> None:
        lake.store.client.meta.events.register("before-call.s3", lambda **_: setattr(self, "count", self.count + 1))

    def per_call(self, action, repeats: int) -> tuple[float, float, float]:
        """(median seconds, requests, listings) per call of ``action``."""
        count, listings = self.count, self.listings
        seconds = timed(action, repeats)
        return seconds, (self.count - count) / repeats, (self.listings - listings) / repeats


def write(lake: Lake, table: str, model: str, loss: float) -> None:
    rows = spec(TABLE).conform([dict(step=i, loss=loss, mse=0.0, l0=1.0, aux=0.0, lr=0.1, dead_fraction=0.0)
                                for i in range(200)])
    with lake.replace(table, model=model, sae="a") as staging:
        for name in ("part-00000.parquet", "part-00001.parquet"):
            pq.write_table(rows, staging / name)


def fill(lake: Lake, tables: int, partitions: int) -> list[str]:
    """``tables`` tables of the same schema (the first is the one queried), one view each in the catalog."""
    names = [TABLE] + [f"other_{i:02d}" for i in range(tables - 1)]
    for name in names:
        for p in range(partitions):
            write(lake, name, f"m{p}", 1.0)
    build_catalog(lake, [TABLE], [])
    return names


def timed(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(tables: int, partitions: int, scratch: Path, requests: Requests) -> None:
    disk = Lake(scratch / f"disk-{tables}")
    store = Lake(f"s3://{BUCKET}/lake-{tables}", cache=scratch / f"mirror-{tables}")
    requests.watch(store)
    for lake in (disk, store):
        fill(lake, tables, partitions)
        read_query(lake, QUERY)  # the catalog fetched, DuckDB and s3fs warmed up
    print(f"a lake of {tables} tables x {partitions} partitions x 2 files, on the store and on disk (medians of 7, "
          "store and disk alternated)")
    disk_query, store_query = [], []
    for _ in range(7):
        disk_query.append(timed(lambda: read_query(disk, QUERY), 1))
        store_query.append(requests.per_call(lambda: read_query(store, QUERY, attempts=1), 1))
    seconds, count, listings = (statistics.median(v) for v in zip(*store_query, strict=True))
    disk_seconds = statistics.median(disk_query)
    print(f"sae-lake sql, one table: store {seconds * 1000:.0f} ms, {count:.0f} requests, {listings:.0f} listing(s) "
          f"| disk {disk_seconds * 1000:.0f} ms | ratio {seconds / disk_seconds:.1f}x")
    print(f"  two whole-lake listings, what a reader took per attempt before snapshots: "
          f"{2 * timed(lambda: store.store.listing(), 5) * 1000:.0f} ms")
    disk_commit = timed(lambda: write(disk, TABLE, "m0", 2.0), 7)
    seconds, count, _ = requests.per_call(lambda: write(store, TABLE, "m0", 2.0), 7)
    print(f"one partition commit of 2 files: store {seconds * 1000:.0f} ms, {count:.0f} requests | disk "
          f"{disk_commit * 1000:.1f} ms | ratio {seconds / disk_commit:.0f}x")


def under_rewrites(partitions: int, scratch: Path) -> None:
    """Queries while another thread rewrites the table's partitions back to back for 10 s."""
    url = f"s3://{BUCKET}/lake-rewritten"
    store = Lake(url, cache=scratch / "reader")
    fill(store, 1, partitions)
    stop, rewrites = threading.Event(), [0]

    def rewrite():
        writer = Lake(url, cache=scratch / "writer")
        while not stop.is_set():
            write(writer, TABLE, f"m{rewrites[0] % partitions}", float(rewrites[0]))
            rewrites[0] += 1

    thread = threading.Thread(target=rewrite)
    thread.start()
    answered, deadline = 0, time.monotonic() + 10
    while time.monotonic() < deadline:
        assert read_query(store, QUERY, attempts=1).to_pylist()[0]["n"] == 400 * partitions
        answered += 1
    stop.set()
    thread.join()
    print(f"during {rewrites[0]} back-to-back partition rewrites (10 s): {answered} of {answered} queries answered on "
          "their first attempt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, nargs="+", default=[12, 36])
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    server = start_server()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            requests = Requests()
            for tables in args.tables:
                measure(tables, args.partitions, Path(scratch), requests)
            under_rewrites(args.partitions, Path(scratch))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
