"""The SQL layer: every query lives in sql/*.sql; this module finds, fills and runs them on DuckDB."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from assets.lakehouse.lake import STAGING

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
# Stored in the catalog after the table views, in order, each where the table it reads is there: a plain DuckDB
# that attaches the catalog can call them.
ANALYSIS = {"kendall_tau_b": None, "rank_groups_view": "sae_summary"}


def query_text(name: str, **params: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no query {name!r} in {SQL_DIR}")
    text = path.read_text()
    return text.format(**params) if params else text


def build_catalog(lake_root: Path, tables: list[str], target: Path, variants: list[tuple[str, str, bool, bool]],
                  absent: dict[str, pa.Schema] | None = None) -> dict[str, int]:
    """(Re)create ``target`` as ``populate`` fills it; returns row counts. Written aside, then renamed."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    with duckdb.connect(str(tmp)) as con:
        counts = populate(con, lake_root, tables, variants, absent)
    os.replace(tmp, target)
    return counts


def populate(con: duckdb.DuckDBPyConnection, lake_root: Path, tables: list[str],
             variants: list[tuple[str, str, bool, bool]], absent: dict[str, pa.Schema] | None = None
             ) -> dict[str, int]:
    """One view per table, an empty table per declared table with no data yet (``absent``: name -> schema with
    its partition keys), ``sae_variants`` from ``variants`` (model, sae, in_config, materialized), and the
    analysis layer: the ``kendall_tau_b`` macro and the ``rank_groups`` view (over the ``sae_summary`` table)."""
    counts = create_views(con, lake_root, tables)
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


def analysis_connection(lake_root: Path, present: list[str], tables: list[str],
                        variants: list[tuple[str, str, bool, bool]]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB populated as the catalog is, over ``tables`` only (``present``: the lake's tables;
    a declared table with no data yet is an empty table of its schema)."""
    from assets.lakehouse.tables import TABLES

    con = duckdb.connect()
    absent = {name: TABLES[name].schema_with_keys for name in tables if name not in present}
    populate(con, lake_root, [name for name in tables if name in present], variants, absent)
    return con


def create_sae_variants_view(con: duckdb.DuckDBPyConnection, variants: list[tuple[str, str, bool, bool]]) -> None:
    """The ``sae_variants`` view: (model, sae, in_config, materialized) and a current / retired status."""
    values = ", ".join(f"({_literal(m)}, {_literal(s)}, {i}, {d})" for m, s, i, d in variants)
    con.execute(query_text("sae_variants_view", values=values))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_views(con: duckdb.DuckDBPyConnection, lake_root: Path, tables: list[str]) -> dict[str, int]:
    """One view per lake table on ``con``; returns their row counts."""
    counts = {}
    for table in tables:
        glob = (lake_root / table / "**" / "*.parquet").as_posix().replace("'", "''")
        con.execute(query_text("catalog_view", table=table, glob=glob))
        counts[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0]
    return counts


def connect_catalog(catalog: Path) -> duckdb.DuckDBPyConnection:
    if not catalog.is_file():
        raise FileNotFoundError(f"{catalog}: no catalog yet (run `make demo` or materialize the catalog asset)")
    return duckdb.connect(str(catalog), read_only=True)


class ReadQueryError(ValueError):
    """A statement ``read_query`` does not run, or a query that failed on the lake as it stood."""


def lake_state(lake_root: Path) -> tuple | None:
    """The identity of every file a catalog view can read (path, inode, size, mtime), or None while a partition
    is being swapped in (its old folder is set aside as ``.<name>.old-*`` until the new one is in place)."""
    state = []
    try:
        for path in sorted(lake_root.rglob("*")):
            if path.relative_to(lake_root).parts[0] == STAGING:
                continue
            if path.name.startswith(".") and ".old-" in path.name:
                return None
            if path.suffix in (".parquet", ".duckdb"):
                stat = path.stat()
                state.append((str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns))
    except FileNotFoundError:  # a folder or file went away while it was listed: a rewrite under way
        return None
    return tuple(state)


def read_query(catalog: Path, query: str, attempts: int = 50, pause_s: float = 0.02) -> pa.Table:
    """Run one read-only statement (SELECT, EXPLAIN) on the catalog and return its whole result, read from one
    state of the lake: when a materialization rewrote a table the query read (or was mid-swap), the query runs
    again, so a reader never gets a table with a partition missing or twice, nor an error from a file that
    vanished under it."""
    _check_reads_only(query)
    lake_root = catalog.parent
    for _ in range(attempts):
        before = lake_state(lake_root)
        if before is not None:
            with connect_catalog(catalog) as con:
                con.execute("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false")
                try:
                    result = con.sql(query).to_arrow_table()
                except duckdb.Error as exc:
                    if lake_state(lake_root) == before:
                        raise ReadQueryError(str(exc)) from None
                    result = None
            if result is not None and lake_state(lake_root) == before:
                return result
        time.sleep(pause_s)
    raise ReadQueryError(f"the lake under {catalog} changed during each of {attempts} attempts at the query")


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
