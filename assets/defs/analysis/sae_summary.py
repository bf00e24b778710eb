"""``sae_summary``: one row per current SAE and baseline dictionary with every per-SAE score side by side
(sql/sae_summary.sql), the items every rank comparison and the report read."""

import dagster as dg

from assets.lakehouse.registry import variant_status
from assets.lakehouse.sql import analysis_connection, query_text
from assets.shared.automation import ON_ANY_UPDATE
from assets.shared.metadata import table_metadata
from assets.shared.resources import LakeResource

SOURCES = ["lm_eval", "sae_metrics", "latent_stats", "autointerp", "interpretability", "steering_summary",
           "selection", "concept_recovery", "true_interpretability", "true_steerability"]


@dg.asset(deps=SOURCES, group_name="analysis", kinds={"duckdb", "parquet"}, automation_condition=ON_ANY_UPDATE)
def sae_summary(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Architecture, sparsity level and index, L0, explained variance, CE loss score, mu (beside "always no"),
    g (beside unsteered), g_out, g_dtc, the gains, the contextual share of the CONCEPT100 latents and, on the toy
    world, concept recovery F1 and the judge-free true interpretability and true steerability; a control twin's
    dictionaries name the trained model in ``control_of``. Retired variants are left out; their rows stay in
    the per-SAE tables."""
    lake_obj = lake.lake()
    variants = variant_status(lake.settings(), lake_obj)
    with analysis_connection(lake_obj, lake_obj.tables(), SOURCES, variants) as con:
        table = con.sql(query_text("sae_summary")).to_arrow_table()
    lake_obj.write_table("sae_summary", table)
    context.log.info(f"sae_summary: {table.num_rows} SAEs and baselines")
    return dg.MaterializeResult(metadata=table_metadata(table, preview_rows=10))
