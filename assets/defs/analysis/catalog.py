"""``catalog``: lake/catalog.duckdb with one view per lake table (and ``sae_variants``), for ad hoc SQL;
and the ``catalog_refresh`` job."""

import dagster as dg

from assets.lakehouse.registry import variant_status
from assets.lakehouse.sql import build_catalog
from assets.lakehouse.tables import TABLES
from assets.shared.automation import ON_ANY_UPDATE
from assets.shared.metadata import markdown_table
from assets.shared.resources import LakeResource


@dg.asset(deps=[*TABLES, "sae", "language_model"],
          group_name="analysis", kinds={"duckdb"}, automation_condition=ON_ANY_UPDATE)
def catalog(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Views over every table in the lake (an empty table for a declared one with no data yet), ``sae_variants``:
    each (model, variant) pair with results or in lake.toml, marked current or retired; the ``kendall_tau_b``
    macro and the ``rank_groups`` view. Attach it read-only (``sae-lake sql`` does). On an object store it also
    deletes replaced files kept past ``[lake] retain_s`` in partitions nobody rewrote since."""
    lake_obj = lake.lake()
    variants = variant_status(lake.settings(), lake_obj)
    present = lake_obj.tables()
    absent = {name: spec.schema_with_keys for name, spec in TABLES.items() if name not in present}
    counts = build_catalog(lake_obj, present, variants, absent)
    retired = [f"{m}|{s}" for m, s, current, present in variants if present and not current]
    expired = lake_obj.expire_replaced()
    context.log.info(f"catalog: {len(counts)} views {counts}; retired variants with results: {retired}; "
                     f"{expired} replaced files past [lake] retain_s deleted")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(lake_obj.uri("catalog.duckdb")),
        "views": dg.MetadataValue.md(markdown_table([{"view": k, "rows": v} for k, v in counts.items()])),
        "retired": ", ".join(retired) or "none",
        "replaced_files_deleted": expired,
    })


catalog_refresh_job = dg.define_asset_job("catalog_refresh",
                                          selection=["interpretability_by_kind", "sae_summary", "rank_agreement",
                                                     "selection_lift", "control_contrast", "control_separation",
                                                     "instrument_reliability", "instrument_validity", "proxies",
                                                     "patching_report",
                                                     "report", "dashboards_index", "catalog"])
