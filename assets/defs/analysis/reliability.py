"""``instrument_reliability``: per model, how much of each SAE-level instrument's spread between SAEs survives a
redraw of its units (split-half, Spearman-Brown corrected), and the ceiling that sets on any tau between two
instruments (``sae_models.evals.reliability``; the units from sql/reliability_units.sql and reliability_pool.sql)."""

import dagster as dg

from assets.lakehouse.sql import analysis_connection, query_text
from assets.shared.automation import ON_ANY_UPDATE
from assets.shared.metadata import markdown_table
from assets.shared.resources import LakeResource

TABLE = "instrument_reliability"
SOURCES = ["sae_summary", "autointerp", "steering_concepts", "feature_scores", "true_interpretability",
           "true_steerability"]


def _fmt(value) -> str:
    return "" if value is None else f"{value:.2f}"


@dg.asset(deps=SOURCES, group_name="analysis", kinds={"duckdb", "parquet"}, automation_condition=ON_ANY_UPDATE)
def instrument_reliability(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Per model (its SAEs: no baselines, no control twins) and instrument (mu, mu_simulation, g, g - g_unsteered,
    g_dtc, the gain): the split-half reliability over 200 random splits of each SAE's units with a 95% bootstrap
    interval over SAEs; and per pair of instruments the ceiling on a tau between them."""
    from sae_models.evals.reliability import run_reliability

    lake_obj, settings = lake.lake(), lake.settings()
    with analysis_connection(lake_obj, lake_obj.tables(), SOURCES, []) as con:
        units = con.sql(query_text("reliability_units")).pl().to_dicts()
        pool = con.sql(query_text("reliability_pool")).pl().to_dicts()
    rows = run_reliability(units, pool, settings.selection, min(settings.analysis.resamples, 999))
    lake_obj.write_table(TABLE, rows)
    context.log.info("reliability: " + "; ".join(f"{r.model} {r.instrument} {_fmt(r.reliability)}"
                                                 for r in rows if r.partner is None))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows),
        "reliability": dg.MetadataValue.md(markdown_table([
            {"model": r.model, "instrument": r.instrument, "n": r.n_saes, "units": r.units,
             "reliability": _fmt(r.reliability), "ci": f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"}
            for r in rows if r.partner is None])),
        "tau_ceilings": dg.MetadataValue.md(markdown_table([
            {"model": r.model, "pair": f"{r.instrument} ~ {r.partner}", "tau_ceiling": _fmt(r.tau_ceiling)}
            for r in rows if r.partner is not None])),
    })
