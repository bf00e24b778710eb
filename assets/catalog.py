"""The ``catalog`` asset: lake/catalog.duckdb with one view per lake table, for ad hoc SQL."""

import dagster as dg

from assets.activations import activations
from assets.autointerp import AUTOINTERP, INTERPRETABILITY, LATENT_EXAMPLES, interpretability_report
from assets.corpus import corpus
from assets.metadata import markdown_table
from assets.models import language_model
from assets.resources import LakeResource
from assets.saes import LATENT_STATS, SAE_METRICS, concept_recovery, sae
from assets.sql import build_catalog


@dg.asset(
    deps=[corpus, language_model, activations, sae, SAE_METRICS, LATENT_STATS, concept_recovery, LATENT_EXAMPLES,
          AUTOINTERP, INTERPRETABILITY, interpretability_report],
    group_name="analysis", kinds={"duckdb"},
    automation_condition=dg.AutomationCondition.eager(),
)
def catalog(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Views over every table in the lake; attach it read-only (``sae-lake sql`` does)."""
    lake_obj = lake.lake()
    counts = build_catalog(lake_obj.root, lake_obj.tables(), lake_obj.catalog_path)
    context.log.info(f"catalog: {len(counts)} views {counts}")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(lake_obj.catalog_path)),
        "views": dg.MetadataValue.md(markdown_table([{"view": k, "rows": v} for k, v in counts.items()])),
    })
