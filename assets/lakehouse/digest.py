"""One digest per lake table and per folder of weights: whether two lakes hold the same results.

A table's digest hashes its rows in a canonical order (sorted: the order rows were written in does not count),
every column but the measured wall times (``WALL_TIME``) and the judge-usage counts (``JUDGE_USAGE``: calls asked
anew and answers from the cache depend on what the cache held when a run asked, not on the results): what a run
computed, not when or how fast. The judge cache is a store of answers by key, so its rows count once each (two
runs at once may both miss, and both write, the same answer). Weights
(``models/``, ``saes/``) are hashed file by file. ``bench/reproducibility.py`` compares two lakes with it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sae_models.judges.judge import USAGE_COLUMNS

WALL_TIME = {"train_seconds", "created"}  # lm_eval's training time; judge_cache's write time
JUDGE_USAGE = set(USAGE_COLUMNS) - {"judge_model"}
KEYED_STORES = {"judge_cache"}
WEIGHTS = ("models", "saes")


def table_digest(folder: Path) -> tuple[str, int]:
    """(digest, rows) of every Parquet file under ``folder``, Hive keys included, wall times and judge usage left
    out; the rows counted are the distinct ones of a keyed store."""
    import duckdb

    glob = str(folder / "**" / "*.parquet").replace("'", "''")
    with duckdb.connect(config={"threads": 1}) as con:
        table = con.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
                        ).to_arrow_table()
    table = table.select(sorted(c for c in table.column_names if c not in WALL_TIME | JUDGE_USAGE))
    rows = sorted(repr(tuple(r.values())) for r in table.to_pylist())
    if folder.name in KEYED_STORES:
        rows = sorted(set(rows))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16], len(rows)


def weights_digest(folder: Path) -> str:
    """Hash of every safetensors file under ``folder``, with its relative path."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.safetensors")):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def lake_digests(root: Path) -> dict[str, str]:
    """Every table's and weight folder's digest in a local lake (row counts beside the tables')."""
    out = {}
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        if folder.name in WEIGHTS:
            out[folder.name] = weights_digest(folder)
        elif any(folder.rglob("*.parquet")):
            digest, rows = table_digest(folder)
            out[folder.name] = f"{digest} ({rows} rows)"
    return out
