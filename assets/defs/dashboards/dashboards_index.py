"""``dashboards_index``: lake/feature_dashboards/index.html, every SAE's dashboard with its headline figures,
and a link to the report page."""

import dagster as dg

from assets.shared.automation import ON_ANY_UPDATE
from assets.shared.metadata import page_links
from assets.shared.resources import LakeResource

SUMMARY = ("l0", "explained_variance", "mu", "g", "g_dtc")


def _kind(row: dict | None) -> str:
    if row is None:
        return "–"
    if row["control_of"]:
        return "twin's " + ("baseline" if row["is_baseline"] else "SAE")
    return row["architecture"] if row["architecture"] == "oracle" else "baseline" if row["is_baseline"] else "SAE"


@dg.asset(deps=["feature_dashboards", "sae_summary", "report"], group_name="dashboards", kinds={"html"},
          automation_condition=ON_ANY_UPDATE)
def dashboards_index(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The lake's index of feature dashboards: one row per SAE that has one, sortable, linking it."""
    from assets.dashboards.pages import lake_index_page

    lake_obj = lake.lake()
    summary = {(r["model"], r["sae"]): r for r in lake_obj.rows("sae_summary")}
    rows = []
    for model in lake_obj.partitions("feature_dashboards", "model"):
        for sae in lake_obj.partitions(f"feature_dashboards/model={model}", "sae"):
            row = summary.get((model, sae))
            (metrics,) = lake_obj.read_table("sae_metrics", model=model, sae=sae).to_pylist()
            rows.append({"model": model, "sae": sae, "href": f"model={model}/sae={sae}/index.html",
                         "kind": _kind(row), "latents": metrics["d_sae"],
                         **{k: (row or metrics).get(k) for k in SUMMARY}})
    report = lake_obj.path("reports") / "report.html"
    page = lake_index_page(rows, "../reports/report.html" if lake_obj.store or report.is_file() else None)
    path = lake_obj.write_file("feature_dashboards", "index.html", page.encode())
    context.log.info(f"dashboards: {len(rows)} SAEs at {path}")
    return dg.MaterializeResult(metadata={**page_links(path), "saes": len(rows)})
