"""``selection_lift``: [W25] Table 2 from our own tables, the mean steering score per model without
selection, with the output-score baseline and with DTC selection, and the lifts, averaged two ways
(sql/selection_lift.sql)."""

import dagster as dg

from assets.lakehouse.sql import analysis_connection, query_text
from assets.shared.automation import ON_ANY_UPDATE
from assets.shared.metadata import markdown_table
from assets.shared.resources import LakeResource


@dg.asset(deps=["sae_summary"], group_name="analysis", kinds={"duckdb", "parquet"},
          automation_condition=ON_ANY_UPDATE)
def selection_lift(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Per model and over all models, SAEs and baseline dictionaries in separate rows."""
    lake_obj = lake.lake()
    with analysis_connection(lake_obj, lake_obj.tables(), ["sae_summary"], []) as con:
        rows = con.sql(query_text("selection_lift")).pl().to_dicts()
    lake_obj.write_table("selection_lift", rows)
    context.log.info("selection lift: " + "; ".join(
        f"{r['model']} {r['dictionaries']} g {r['g']:.3f} -> g_dtc {r['g_dtc']:.3f}" for r in rows
        if r["g"] is not None and r["g_dtc"] is not None))
    return dg.MaterializeResult(metadata={"dagster/row_count": len(rows),
                                          "table": dg.MetadataValue.md(markdown_table(rows))})
