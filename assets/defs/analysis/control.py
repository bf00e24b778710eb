"""``control_contrast`` and ``control_separation``: every score of a trained model's dictionaries beside its
random-weights twin's, with bootstrap intervals, and which score tells trained from random apart
(``sae_models.evals.control``; the units from sql/control_units.sql)."""

import dagster as dg

from assets.lakehouse.sql import analysis_connection, query_text
from assets.shared.automation import ON_ANY_UPDATE
from assets.shared.metadata import markdown_table
from assets.shared.resources import LakeResource

SOURCES = ["sae_summary", "autointerp", "steering_concepts", "selection", "concept_recovery"]


@dg.multi_asset(
    specs=[dg.AssetSpec("control_contrast", deps=SOURCES, group_name="analysis", kinds={"duckdb", "parquet"},
                        automation_condition=ON_ANY_UPDATE,
                        description="Per dictionary and score (mu, mu_simulation, g, g - g_unsteered, the concept "
                                    "rating, g_dtc, concept F1): the trained model's, its control twin's, the "
                                    "difference and its 95% BCa interval."),
           dg.AssetSpec("control_separation", deps=["control_contrast"], group_name="analysis",
                        kinds={"duckdb", "parquet"}, automation_condition=ON_ANY_UPDATE,
                        description="Per model and score: how well it tells the trained model's SAEs from the "
                                    "twin's (wins with a sign test, mean paired difference with its interval, "
                                    "AUROC).")],
)
def control_contrast(context: dg.AssetExecutionContext, lake: LakeResource):
    from sae_models.evals.control import run_control

    lake_obj, resamples = lake.lake(), lake.settings().analysis.resamples
    with analysis_connection(lake_obj, lake_obj.tables(), SOURCES, []) as con:
        units = con.sql(query_text("control_units")).pl().to_dicts()
    result = run_control(units, resamples)
    rows, separated = result.rows, result.summary
    lake_obj.write_table("control_contrast", rows)
    lake_obj.write_table("control_separation", separated)
    overall = [{"model": s.model, "metric": s.metric, "n": s.n_pairs, "trained": s.trained, "twin": s.twin,
                "difference": s.difference, "wins": f"{s.trained_higher}-{s.twin_higher}", "auroc": s.auroc}
               for s in separated]
    context.log.info(f"control: {len(rows)} contrasts over {len({(r.model, r.sae) for r in rows})} dictionaries")
    yield dg.MaterializeResult(asset_key="control_contrast", metadata={"dagster/row_count": len(rows)})
    yield dg.MaterializeResult(asset_key="control_separation", metadata={
        "dagster/row_count": len(separated), "table": dg.MetadataValue.md(markdown_table(overall))})
