"""Readers during writes: 50 concurrent readers of the catalog while another process rewrites the partitions
they read (through ``Lake.write_table``, the path every asset writes by) and rebuilds the catalog."""

import itertools
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from assets.lakehouse.sql import ReadQueryError, build_catalog, connect_catalog, read_query

MODELS, SAES, ROWS = ("m1", "m2"), ("a", "b", "c", "d"), 200
QUERY = ("select count(*) as n, count(distinct (model, sae)) as partitions, "
         "max(versions) as versions_per_partition from (select model, sae, count(distinct loss) as versions "
         "from sae_training group by 1, 2) join sae_training using (model, sae)")
EXPECTED = {"n": len(MODELS) * len(SAES) * ROWS, "partitions": len(MODELS) * len(SAES), "versions_per_partition": 1}

WRITER = textwrap.dedent("""
    import shutil, sys, time
    from pathlib import Path
    import pyarrow.parquet as pq
    from assets.lakehouse.lake import Lake
    from assets.lakehouse.sql import build_catalog
    from assets.lakehouse.tables import spec
    root, seconds, models, saes, rows = Path(sys.argv[1]), float(sys.argv[2]), *sys.argv[3:5], int(sys.argv[5])
    torn = sys.argv[6] == "in-place"  # the control: delete the partition, then write its file where it was
    spec("sae_training").schema  # imports what the table's schema comes from before the clock starts
    lake, version, stop = Lake(root), 0, time.monotonic() + seconds
    print("writing", flush=True)
    while time.monotonic() < stop:
        version += 1
        for m in models.split(","):
            for s in saes.split(","):
                data = [dict(step=i, loss=float(version), mse=0.0, l0=1.0, aux=0.0, lr=0.1, dead_fraction=0.0)
                        for i in range(rows)]
                if torn:
                    path = lake.path("sae_training", model=m, sae=s)
                    shutil.rmtree(path)
                    path.mkdir()
                    pq.write_table(spec("sae_training").conform(data), path / "part-00000.parquet")
                else:
                    lake.write_table("sae_training", data, model=m, sae=s)
        if version % 5 == 0:
            build_catalog(root, ["sae_training"], lake.catalog_path, [])
    print(version)
""")


@pytest.fixture
def lake_being_rewritten(tmp_path):
    """A lake of 8 partitions and its catalog, and a writer process rewriting them for as long as the test."""
    from assets.lakehouse.lake import Lake

    root = tmp_path / "lake"
    lake = Lake(root)
    for m in MODELS:
        for s in SAES:
            lake.write_table("sae_training", [dict(step=i, loss=0.0, mse=0.0, l0=1.0, aux=0.0, lr=0.1,
                                                   dead_fraction=0.0) for i in range(ROWS)], model=m, sae=s)
    build_catalog(root, ["sae_training"], lake.catalog_path, [])

    def start(seconds: float, mode: str = "atomic") -> subprocess.Popen:
        """The writer, once it is writing (its imports take longer than the readers' whole run)."""
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(seconds), ",".join(MODELS),
                                   ",".join(SAES), str(ROWS), mode], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline() == "writing\n"
        return writer

    return lake.catalog_path, start


def _hammer(read, catalog: Path, readers: int, seconds: float) -> tuple[int, list[str]]:
    """``readers`` threads running ``read`` until ``seconds`` pass; (queries answered, anomalies seen)."""
    done, anomalies, lock = [0], [], threading.Lock()
    stop = time.monotonic() + seconds

    def reader():
        while time.monotonic() < stop:
            try:
                row = read(catalog).to_pylist()[0]
                problem = None if row == EXPECTED else f"saw {row}"
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                problem = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            with lock:
                done[0] += 1
                if problem:
                    anomalies.append(problem)

    threads = [threading.Thread(target=reader) for _ in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0], anomalies


def _naive(catalog: Path):
    with connect_catalog(catalog) as con:
        return con.sql(QUERY).to_arrow_table()


def test_the_readers_see_a_table_torn_by_an_in_place_writer(lake_being_rewritten):
    """The control: a writer that deletes a partition and writes it again where it was is caught by the same
    readers, so the test below can tell a torn table from a whole one."""
    catalog, start_writer = lake_being_rewritten
    writer = start_writer(3.0, "in-place")
    try:
        done, anomalies = _hammer(_naive, catalog, readers=50, seconds=2.0)
    finally:
        writer.communicate(timeout=60)
    assert anomalies, f"{done} queries during in-place rewrites saw no torn table"


def test_fifty_readers_during_rewrites_never_see_a_half_written_table(lake_being_rewritten):
    catalog, start_writer = lake_being_rewritten
    writer = start_writer(4.0)
    try:
        done, anomalies = _hammer(lambda c: read_query(c, QUERY), catalog, readers=50, seconds=3.0)
    finally:
        rewrites = int(writer.communicate(timeout=60)[0].split()[-1])
    assert rewrites >= 3  # every partition rewritten several times under the readers
    assert done > 50 and anomalies == [], anomalies[:5]


def test_a_query_that_the_lake_changed_under_runs_again(lake_being_rewritten, monkeypatch):
    """Without the retry a reader would return what it read across a rewrite (or mid-swap): the state of the
    lake is taken before and after, and the query runs again until they agree."""
    import assets.lakehouse.sql as sql

    catalog, _ = lake_being_rewritten
    states = iter([None, ("a",), ("b",), ("b",), ("b",)])  # mid-swap; changed during the query; then stable
    monkeypatch.setattr(sql, "lake_state", lambda root: next(states))
    queries = []
    real = sql.connect_catalog

    def counting(path):
        queries.append(path)
        return real(path)

    monkeypatch.setattr(sql, "connect_catalog", counting)
    assert read_query(catalog, QUERY, pause_s=0).to_pylist() == [EXPECTED]
    assert len(queries) == 2 and next(states, "used up") == "used up"
    changes = itertools.count()
    monkeypatch.setattr(sql, "lake_state", lambda root: (next(changes),))
    with pytest.raises(ReadQueryError, match="changed during each of 3 attempts"):
        read_query(catalog, QUERY, attempts=3, pause_s=0)


def test_sae_lake_sql_processes_read_a_whole_table_while_it_is_rewritten(lake_being_rewritten):
    catalog, start_writer = lake_being_rewritten
    writer = start_writer(5.0)
    cli = [sys.executable, "-m", "assets.lakehouse.cli", "sql", QUERY, "--format", "csv", "--catalog", str(catalog)]
    try:
        readers = [subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
        outputs = [r.communicate(timeout=120) for r in readers]
    finally:
        writer.communicate(timeout=60)
    want = "n,partitions,versions_per_partition\n{n},{partitions},{versions_per_partition}\n".format(**EXPECTED)
    assert [(r.returncode, out, err) for r, (out, err) in zip(readers, outputs, strict=True)] == [(0, want, "")] * 8


@pytest.mark.parametrize("statement", ["create table x as select 1", "copy (select 1) to 'x.csv'",
                                       "install httpfs", "select 1; select 2", "delete from sae_training",
                                       "explain analyze copy (select 1) to 'x.csv'"])
def test_a_statement_that_writes_is_refused_and_the_lake_is_untouched(lake_being_rewritten, statement):
    catalog, _ = lake_being_rewritten
    before = {p: p.read_bytes() for p in catalog.parent.rglob("*") if p.is_file()}
    with pytest.raises(ReadQueryError, match="read-only here|one statement at a time"):
        read_query(catalog, statement)
    assert {p: p.read_bytes() for p in catalog.parent.rglob("*") if p.is_file()} == before
