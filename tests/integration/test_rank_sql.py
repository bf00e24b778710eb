"""The analysis layer stored in the catalog: kendall_tau_b against scipy on tied data, its nulls, and the
views a plain read-only DuckDB can query."""

import duckdb
import numpy as np
import pytest
from scipy import stats

from assets.lakehouse.lake import Lake
from assets.lakehouse.sql import build_catalog
from assets.lakehouse.tables import TABLES


@pytest.fixture()
def catalog(tmp_path):
    """A catalog over an empty lake: every declared table empty, the macro and views in place."""
    lake = Lake(tmp_path)
    build_catalog(lake, [], [], {name: spec.schema_with_keys for name, spec in TABLES.items()})
    return lake.catalog_path


def _tied_groups(seed: int = 0, rows: int = 400):
    rng = np.random.default_rng(seed)
    grp = rng.integers(0, 6, rows)
    return grp, rng.integers(0, 7, rows).astype(float), np.round(rng.normal(size=rows), 1)  # many ties in x and y


def test_kendall_tau_b_equals_scipy_on_tied_data_through_a_read_only_attach(catalog):
    grp, x, y = _tied_groups()
    con = duckdb.connect()
    con.execute(f"ATTACH '{catalog}' AS lake (READ_ONLY)")
    con.execute("CREATE TEMP TABLE items AS SELECT * FROM (SELECT unnest($1) AS grp, unnest($2) AS x, "
                "unnest($3) AS y)", [grp.tolist(), x.tolist(), y.tolist()])
    rows = con.execute("SELECT grp, n, concordant, discordant, tau_b FROM lake.kendall_tau_b('items')").fetchall()
    assert [r[0] for r in rows] == sorted(set(grp.tolist()))
    for g, n, concordant, discordant, tau in rows:
        mask = grp == g
        assert n == mask.sum()
        assert tau == pytest.approx(stats.kendalltau(x[mask], y[mask]).statistic, abs=1e-12)
        assert concordant + discordant <= n * (n - 1) // 2


def test_too_few_items_and_constant_columns_give_null_with_the_reason(catalog):
    con = duckdb.connect(str(catalog), read_only=True)
    con.execute("CREATE TEMP VIEW v AS SELECT * FROM (VALUES ('two', 1, 1), ('two', 2, 2), ('flat', 1, 5), "
                "('flat', 1, 6), ('flat', 1, 7), ('ok', 1, 1), ('ok', 2, 3), ('ok', 3, 2)) t(grp, x, y)")
    got = {g: (n, tau, why) for g, n, tau, why in con.execute(
        "SELECT grp, n, tau_b, null_reason FROM kendall_tau_b('v')").fetchall()}
    assert got["two"] == (2, None, "fewer than 3 items") and got["flat"] == (3, None, "x is constant")
    assert got["ok"][1] == pytest.approx(stats.kendalltau([1, 2, 3], [1, 3, 2]).statistic, abs=1e-12)
    before = con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("CREATE TABLE t AS SELECT 1")
    with pytest.raises(duckdb.Error, match="read-only"):
        con.execute("DROP VIEW sae_variants" if ("sae_variants",) in before else "DROP TABLE sae_summary")
    assert con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall() == before


def test_the_summary_and_rank_views_answer_on_an_empty_lake(catalog):
    con = duckdb.connect(str(catalog), read_only=True)
    assert con.execute("SELECT count(*) FROM sae_summary").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM kendall_tau_b('rank_groups')").fetchone() == (0,)
    columns = [d[0] for d in con.execute("SELECT * FROM sae_summary").description]
    assert {"model", "architecture", "sparsity_index", "l0", "explained_variance", "ce_loss_score", "mu",
            "mu_simulation", "g", "g_out", "g_dtc", "gain"} <= set(columns)


def test_sae_summary_reads_an_lm_eval_written_before_the_twins(tmp_path):
    """lm_eval partitions from before the control twins lack ``control_of``: sae_summary reads their models as
    trained ones instead of failing to bind the column."""
    from assets.lakehouse.sql import analysis_connection, create_sae_variants_view, query_text

    with analysis_connection(Lake(tmp_path), [], list(TABLES), []) as con:
        create_sae_variants_view(con, [("m", "topk-k4", True, True)])
        con.execute("DROP TABLE lm_eval")
        con.execute("CREATE TABLE lm_eval AS SELECT 'm' AS model, 'toyworld' AS source")
        assert con.sql(query_text("sae_summary")).fetchall() == []  # binds and runs (no SAE rows yet)
        con.execute("DROP TABLE lm_eval")
        con.execute("CREATE TABLE lm_eval AS SELECT 'm' AS model, 'toyworld' AS source, 1 AS unrelated")
        with pytest.raises(duckdb.BinderException):  # the old way fails on the old schema
            con.sql("SELECT model, control_of FROM lm_eval").fetchall()
