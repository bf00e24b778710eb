"""The SQL layer: every query lives in sql/*.sql; this module finds, fills and runs them on DuckDB."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from assets.lakehouse.lake import SET_ASIDE, Lake

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
# The analysis tables are computed on one DuckDB thread: a parallel float aggregate sums in an order that depends
# on the threads' split of the rows, so its last bits would change from machine to machine (and run to run).
ANALYSIS_CONFIG = {"threads": 1}
# Stored in the catalog after the table views, in order, each where the table it reads is there: a plain DuckDB
# that attaches the catalog can call them.
ANALYSIS = {"kendall_tau_b": None, "rank_groups_view": "sae_summary"}


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
        con.register("_empty", schema.empty_table())
        con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _empty')
        con.unregister("_empty")
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
    from assets.lakehouse.tables import TABLES

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
        glob = lake.glob(table).replace("'", "''")
        con.execute(query_text("catalog_view", table=table, glob=glob))
        counts[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
    return counts


def connect_catalog(catalog: Path) -> duckdb.DuckDBPyConnection:
    if not catalog.is_file():
        raise FileNotFoundError(f"{catalog}: no catalog yet (run `make demo` or materialize the catalog asset)")
    return duckdb.connect(str(catalog), read_only=True)


class ReadQueryError(ValueError):
    """A statement ``read_query`` does not run, or a query that failed on the lake as it stood."""


def read_query(lake: Lake, query: str, attempts: int = 50, pause_s: float = 0.02) -> pa.Table:
    """Run one read-only statement (SELECT, EXPLAIN) on the lake's catalog and return its whole result, read from
    one state of the lake: when a materialization rewrote a table the query read (or was mid-swap), the query
    runs again, so a reader never gets a table with a partition missing or twice, nor an error from a file that
    vanished under it."""
    _check_reads_only(query)
    for _ in range(attempts):
        before = lake.state()
        if before is not None:
            with connect_catalog(lake.fetch_catalog()) as con:
                con.execute("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false")
                lake.configure_duckdb(con)
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
    stuck = lake.publishing()
    if stuck:
        raise ReadQueryError(f"the lake at {lake.url} is being published to: {', '.join(stuck)} still held a "
                             f"publishing marker after {attempts} attempts (a writer that died mid-publish leaves "
                             "one; materializing that partition again clears it)")
    raise ReadQueryError(f"the lake at {lake.url} changed during each of {attempts} attempts at the query")


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
