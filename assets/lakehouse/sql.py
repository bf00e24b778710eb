"""The SQL layer: every query lives in sql/*.sql; this module finds, fills and runs them on DuckDB."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from assets.lakehouse.lake import SET_ASIDE, Lake
from assets.lakehouse.tables import TABLES

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
# The analysis tables are computed on one DuckDB thread: a parallel float aggregate sums in an order that depends
# on the threads' split of the rows, so its last bits would change from machine to machine (and run to run).
ANALYSIS_CONFIG = {"threads": 1}
# Stored in the catalog after the table views, in order, each where the table it reads is there: a plain DuckDB
# that attaches the catalog can call them.
ANALYSIS = {"kendall_tau_b": None, "rank_groups_view": "sae_summary"}
CATALOG_COPY = "catalog.duckdb"  # a query's own copy of an object-store lake's catalog, its views pinned


def query_text(name: str, **params: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no query {name!r} in {SQL_DIR}")
    text = path.read_text()
    return text.format(**params) if params else text


def build_catalog(lake: Lake, tables: list[str], variants: list[tuple[str, str, bool, bool]],
                  absent: dict[str, pa.Schema] | None = None) -> dict[str, int]:
    """(Re)create the lake's catalog as ``populate`` fills it; returns row counts. Written aside, then renamed
    into place (and published, on an object-store lake)."""
    target = lake.catalog_path
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    with duckdb.connect(str(tmp)) as con:
        counts = populate(con, lake, tables, variants, absent)
    os.replace(tmp, target)
    lake.publish_catalog(target)
    return counts


def populate(con: duckdb.DuckDBPyConnection, lake: Lake, tables: list[str],
             variants: list[tuple[str, str, bool, bool]], absent: dict[str, pa.Schema] | None = None
             ) -> dict[str, int]:
    """One view per table, an empty table per declared table with no data yet (``absent``: name -> schema with
    its partition keys), ``sae_variants`` from ``variants`` (model, sae, in_config, materialized), and the
    analysis layer: the ``kendall_tau_b`` macro and the ``rank_groups`` view (over the ``sae_summary`` table)."""
    counts = create_views(con, lake, tables)
    for name, schema in (absent or {}).items():
        create_empty(con, name, schema)
        counts[name] = 0
    if variants:
        create_sae_variants_view(con, variants)
        counts["sae_variants"] = len(variants)
    for name, reads in ANALYSIS.items():
        if reads is None or reads in counts:
            con.execute(query_text(name))
    return counts


def analysis_connection(lake: Lake, present: list[str], tables: list[str],
                        variants: list[tuple[str, str, bool, bool]]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB populated as the catalog is, over ``tables`` only (``present``: the lake's tables;
    a declared table with no data yet is an empty table of its schema)."""
    con = duckdb.connect(config=ANALYSIS_CONFIG)
    absent = {name: TABLES[name].schema_with_keys for name in tables if name not in present}
    populate(con, lake, [name for name in tables if name in present], variants, absent)
    return con


def create_sae_variants_view(con: duckdb.DuckDBPyConnection, variants: list[tuple[str, str, bool, bool]]) -> None:
    """The ``sae_variants`` view: (model, sae, in_config, materialized) and a current / retired status."""
    values = ", ".join(f"({_literal(m)}, {_literal(s)}, {i}, {d})" for m, s, i, d in variants)
    con.execute(query_text("sae_variants_view", values=values))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_views(con: duckdb.DuckDBPyConnection, lake: Lake, tables: list[str]) -> dict[str, int]:
    """One view per lake table on ``con`` (which is set up to read the lake's URLs); returns their row counts."""
    lake.configure_duckdb(con)
    counts = {}
    for table in tables:
        pin_view(con, lake, table)
        counts[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
    return counts


def pin_view(con: duckdb.DuckDBPyConnection, lake: Lake, table: str) -> str | list[str]:
    """(Re)create the view of ``table`` over what it holds now, replacing whatever ``con`` had by that name; on
    an object store that is the keys its manifests name, which no writer overwrites. A table with no files (every
    partition removed) is an empty table of its declared schema. Returns what the view reads."""
    files = lake.parquet_files(table)
    _replace(con, table)
    if files:
        listed = _literal(files) if isinstance(files, str) else "[" + ", ".join(map(_literal, files)) + "]"
        con.execute(query_text("catalog_view", table=table, files=listed))
    else:
        create_empty(con, table, TABLES[table].schema_with_keys)
    return files


def _replace(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop the view or table ``name``, if there is one."""
    kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ? AND table_schema = "
                       "'main'", [name]).fetchall()
    if kind:
        con.execute(f'DROP {"VIEW" if kind[0][0] == "VIEW" else "TABLE"} "{name}"')


def create_empty(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema) -> None:
    con.register("_empty", schema.empty_table())
    con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _empty')
    con.unregister("_empty")


def connect_catalog(catalog: Path) -> duckdb.DuckDBPyConnection:
    if not catalog.is_file():
        raise FileNotFoundError(f"{catalog}: no catalog yet (run `make demo` or materialize the catalog asset)")
    return duckdb.connect(str(catalog), read_only=True)


class ReadQueryError(ValueError):
    """A statement ``read_query`` does not run, or a query that failed on the lake as it stood."""


def read_query(lake: Lake, query: str, attempts: int = 50, pause_s: float = 0.02) -> pa.Table:
    """Run one read-only statement (SELECT, EXPLAIN) on the lake's catalog and return its whole result, read from
    one state of the lake, so that a reader never gets a table with a partition missing or twice, nor an error
    from a file that vanished under it. On a disk, when a materialization rewrote a table the query read (or was
    mid-swap), the query runs again. On an object store the query reads a snapshot (``read_snapshot``)."""
    _check_reads_only(query)
    if lake.store:
        return read_snapshot(lake, query, attempts)
    for _ in range(attempts):
        before = lake.state()
        if before is not None:
            with connect_catalog(lake.fetch_catalog()) as con:
                _no_extension_installs(con)
                try:
                    result = con.sql(query).to_arrow_table()
                except duckdb.Error as exc:
                    # a file in a folder a swap set aside (".<name>.old-*") vanished under the query: a rewrite,
                    # even when the listing of ``before`` already saw the new folder and the state looks unchanged
                    if lake.state() == before and SET_ASIDE not in str(exc):
                        raise ReadQueryError(str(exc)) from None
                    result = None
            if result is not None and lake.state() == before:
                return result
        time.sleep(pause_s)
    raise ReadQueryError(f"the lake at {lake.url} changed during each of {attempts} attempts at the query")


def read_snapshot(lake: Lake, query: str, attempts: int = 3) -> pa.Table:
    """Run ``query`` on an object-store lake against the tables it reads as their manifests name them when it
    starts: only those tables are listed, and each view is pinned to keys no writer overwrites. A replaced
    partition's keys stay ``[lake] retain_s`` seconds, so a query shorter than that answers on its first attempt
    however often its tables are rewritten; a longer one that lost a file runs again, up to ``attempts`` times."""
    catalog = lake.fetch_catalog()
    with tempfile.TemporaryDirectory(prefix="sae-lake-query-") as scratch:
        for _ in range(attempts):
            copy = Path(scratch) / CATALOG_COPY
            shutil.copyfile(catalog, copy)
            with duckdb.connect(str(copy)) as con:
                _no_extension_installs(con)
                lake.configure_duckdb(con)
                tables, pinned = sorted(_tables_named(con, query)), {}
                try:
                    for table in tables:
                        pinned[table] = pin_view(con, lake, table)
                    return con.sql(query).to_arrow_table()
                except duckdb.Error as exc:
                    if not (_lost_a_file(exc) and _moved_on(lake, tables, pinned)):
                        raise ReadQueryError(str(exc)) from None  # the query's own error, not a rewrite
            copy.unlink()
    raise ReadQueryError(f"the lake at {lake.url}: {', '.join(tables)} rewritten, and the files the query had "
                         f"started on deleted, during each of {attempts} attempts; a query that takes longer than "
                         f"[lake] retain_s = {lake.store.policy.retain_s:g} s needs a larger retain_s")


def _moved_on(lake: Lake, tables: list[str], pinned: dict[str, str | list[str]]) -> bool:
    """Whether a table's files changed since the query pinned them (or pinning itself met a deleted file)."""
    return len(pinned) < len(tables) or any(lake.parquet_files(t) != files for t, files in pinned.items())


def _lost_a_file(exc: duckdb.Error) -> bool:
    """Whether DuckDB failed on a file that was not there (deleted under the query), not on the query itself."""
    text = str(exc)
    return isinstance(exc, duckdb.IOException) or any(
        sign in text for sign in ("FileNotFoundError", "No files found", "NoSuchKey", "404"))


def _tables_named(con: duckdb.DuckDBPyConnection, query: str) -> set[str]:
    """The lake tables named in ``query`` or in the catalog views it names (``rank_groups`` reads
    ``sae_summary``). Words, not a binder: DuckDB's own ``get_table_names`` fails on some valid queries (a join
    ``USING`` a column of a subquery), and naming a table needlessly costs a listing, not a wrong answer."""
    views = dict(con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall())
    named, texts = set(), [query]
    while texts:
        for word in {w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", texts.pop())}:
            if word not in named and (word in TABLES or word in views):
                named.add(word)
                if word not in TABLES:
                    texts.append(views[word])
    return named & set(TABLES)


def _no_extension_installs(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false")


def _check_reads_only(query: str) -> None:
    """One query (SELECT, DESCRIBE, SHOW, SUMMARIZE), or EXPLAIN [ANALYZE] of one: EXPLAIN ANALYZE runs what
    follows it, so a COPY behind it would write even on a read-only connection."""
    parse = duckdb.connect().extract_statements
    try:
        statements = parse(query)
        if len(statements) != 1:
            raise ReadQueryError(f"one statement at a time, got {len(statements)}")
        kind = statements[0].type
        if kind == duckdb.StatementType.EXPLAIN:
            inner = re.sub(r"^\s*explain\s+(analyze\s+)?", "", query, flags=re.IGNORECASE)
            kind = parse(inner)[0].type
    except duckdb.Error as exc:
        raise ReadQueryError(str(exc)) from None
    if kind != duckdb.StatementType.SELECT:
        raise ReadQueryError(f"the lake is read-only here: a {kind.name} statement does not run (SELECT, "
                             "DESCRIBE, SHOW, SUMMARIZE and EXPLAIN do); tables are written by materializing assets")
