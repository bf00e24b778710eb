"""``interpretability_by_kind`` across models: the [C23] Figure 2 comparison, mean detection and simulation
score of the CONCEPT100 latents with 95% intervals per dictionary kind (SAE architectures vs the neuron /
random / PCA / ICA baselines), as a table and lake/reports/interpretability_by_kind.png; and on the toy world
the truth check, Spearman of detection score vs ground-truth purity per model."""

import dagster as dg

from assets.lakehouse.registry import variant_status
from assets.lakehouse.sql import ANALYSIS_CONFIG, create_sae_variants_view, create_views, query_text
from assets.shared.automation import ON_ANY_UPDATE
from assets.shared.metadata import image_md, kind_bars, markdown_table
from assets.shared.resources import LakeResource

TABLE = "interpretability_by_kind"
SHOWN = ("model", "kind", "n", "detection", "detection_ci", "simulation", "simulation_ci")


@dg.asset(deps=["autointerp", "interpretability"], group_name="interpretability", kinds={"duckdb", "parquet"},
          automation_condition=ON_ANY_UPDATE)
def interpretability_by_kind(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    import duckdb

    from sae_models.evals.autointerp import add_intervals, purity_correlation_by_model

    lake_obj = lake.lake()
    if "autointerp" not in lake_obj.tables():
        lake_obj.write_table(TABLE, [])
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "note": "no autointerp scores yet"})
    with duckdb.connect(config=ANALYSIS_CONFIG) as con:
        create_views(con, lake_obj, ["autointerp", "interpretability"])
        create_sae_variants_view(con, variant_status(lake.settings(), lake_obj))
        rows = con.sql(query_text(TABLE)).pl().to_dicts()
        truth = con.sql("SELECT model, detection_score, concept_purity, purity_feature FROM autointerp "
                        "JOIN sae_variants USING (model, sae) WHERE in_config AND concept_purity IS NOT NULL").pl()
    rows = add_intervals(rows)
    lake_obj.write_table(TABLE, rows)
    png = kind_bars(rows, [("detection", "detection score [SB]"), ("simulation", "simulation score [C23]")],
                    "CONCEPT100 latents, mean and 95% CI per dictionary kind")
    lake_obj.write_file("reports", f"{TABLE}.png", png)
    rho = purity_correlation_by_model(truth["model"].to_list(), truth["detection_score"].to_list(),
                                      truth["concept_purity"].to_list(), truth["purity_feature"].to_list())
    context.log.info(f"Spearman(detection, purity) per model and best-feature stratum: {rho}")
    return dg.MaterializeResult(metadata={
        "figure": image_md(png, "interpretability by dictionary kind"),
        "table": dg.MetadataValue.md(markdown_table([{k: r[k] for k in SHOWN} for r in rows])),
        **{f"spearman_purity/{m}": v for m, v in rho.items() if v is not None},
    })
