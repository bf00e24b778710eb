"""``proxies``: per model, which cheap per-SAE metric ranks its SAEs by steering utility (g) and by the toy
world's true steerability, Holm-adjusted over the model's comparisons (``sae_models.evals.proxies``; the values
from sql/proxies.sql). With a blocking check that the table is whole."""

import dagster as dg

from assets.lakehouse.sql import analysis_connection, query_text
from assets.shared.automation import ON_ANY_UPDATE
from assets.shared.metadata import markdown_table
from assets.shared.resources import LakeResource

TABLE = "proxies"
SOURCES = ["sae_summary", "sae_metrics"]


def _fmt(value) -> str:
    return "" if value is None else f"{value:.3f}"


@dg.asset(deps=SOURCES, group_name="analysis", kinds={"duckdb", "parquet"}, automation_condition=ON_ANY_UPDATE)
def proxies(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Per model, metric (L0, explained variance, CE and KL scores, dead fraction, mu, mu_simulation, concept F1,
    true interpretability) and target (g, true steerability): tau-b over the model's SAEs with its BCa interval,
    permutation p and Holm-adjusted p."""
    from sae_models.evals.proxies import run_proxies

    lake_obj, settings = lake.lake(), lake.settings()
    with analysis_connection(lake_obj, lake_obj.tables(), SOURCES, []) as con:
        saes = con.sql(query_text("proxies")).pl().to_dicts()
    rows = run_proxies(saes, settings.analysis.resamples)
    lake_obj.write_table(TABLE, rows)
    found = [r for r in rows if r.p_holm is not None and r.p_holm < 0.05]
    context.log.info("proxies, Holm p < 0.05: " + ("; ".join(f"{r.model} {r.metric} ~ {r.target} {_fmt(r.tau_b)}"
                                                            for r in found) or "none"))
    return dg.MaterializeResult(metadata={"dagster/row_count": len(rows), "proxies": dg.MetadataValue.md(
        markdown_table([{"model": r.model, "metric": r.metric, "target": r.target, "n": r.n, "tau_b": _fmt(r.tau_b),
                         "p": _fmt(r.p_value), "p_holm": _fmt(r.p_holm)} for r in rows]))})


@dg.asset_check(asset=proxies, blocking=True, description=(
    "tau-b in [-1, 1]; one row per model, metric and target; Holm's p never below the raw p"))
def proxies_complete(lake: LakeResource) -> dg.AssetCheckResult:
    from sae_models.evals.proxies import METRICS, TARGETS

    rows = lake.lake().read_table(TABLE).to_pylist()
    keys = [(r["model"], r["metric"], r["target"]) for r in rows]
    models = {r["model"] for r in rows}
    complete = set(keys) == {(m, x, t) for m in models for x in METRICS for t in TARGETS}
    out_of_range = [k for k, r in zip(keys, rows, strict=True) if r["tau_b"] is not None and abs(r["tau_b"]) > 1 + 1e-9]
    below = [k for k, r in zip(keys, rows, strict=True) if r["p_holm"] is not None and r["p_holm"] < r["p_value"]]
    passed = complete and len(set(keys)) == len(keys) and not out_of_range and not below
    return dg.AssetCheckResult(passed=passed, metadata={
        "complete": complete, "duplicates": len(keys) - len(set(keys)), "out_of_range": str(out_of_range),
        "holm_below_raw": str(below)})
