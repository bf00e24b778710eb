"""``rank_agreement``: how well each SAE-level score ranks the others, Kendall tau-b overall and by
architecture, sparsity level and model, with permutation p-values and BCa intervals, and the axis-controlled
psi and Psi: the shape of [W25] Tables 1 and 3. The tau-b values come from the ``kendall_tau_b`` macro over the
``rank_groups`` view, the same SQL the catalog stores."""

import dagster as dg

from assets.lakehouse.sql import analysis_connection, query_text
from assets.shared.automation import ON_ANY_UPDATE
from assets.shared.metadata import markdown_table
from assets.shared.resources import LakeResource

TABLE = "rank_agreement"


def _fmt(value) -> str:
    return "" if value is None else f"{value:.3f}"


@dg.asset(deps=["sae_summary"], group_name="analysis", kinds={"duckdb", "parquet"}, automation_condition=ON_ANY_UPDATE)
def rank_agreement(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per (comparison, group): n, pairs, tau_b, its 95% BCa interval and permutation p; then psi per
    axis and Psi per comparison. Baselines are not items (they are no SAEs); they sit beside them in the report.
    The control twins' SAEs are items only with ``[control] in_rank_analysis``; ``controls_included`` says which."""
    from sae_models.evals.rank_agreement import run_rank_agreement

    lake_obj, settings = lake.lake(), lake.settings()
    include = settings.control.in_rank_analysis
    with analysis_connection(lake_obj, lake_obj.tables(), ["sae_summary"], []) as con:
        con.execute(f"SET VARIABLE include_controls = {str(include).lower()}")
        groups = con.sql(query_text("rank_agreement")).pl().to_dicts()
        items = {(r["comparison"], r["grouping"], r["group"]): (r["x"], r["y"])
                 for r in con.sql(query_text("rank_items")).pl().to_dicts()}
        psi = con.sql(query_text("rank_psi")).pl().to_dicts()
    rows = run_rank_agreement(groups, items, psi, settings.analysis.resamples, controls_included=include)
    lake_obj.write_table(TABLE, rows)
    overall = [r for r in rows if r.grouping in ("overall", "psi")]
    context.log.info("rank agreement: " + "; ".join(f"{r.comparison} {r.group} {_fmt(r.tau_b)}" for r in overall))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows),
        "overall_and_psi": dg.MetadataValue.md(markdown_table([
            {"comparison": r.comparison, "group": r.group, "n": r.n, "tau_b": _fmt(r.tau_b),
             "ci": f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if r.ci_low is not None else "", "p": _fmt(r.p_value)}
            for r in overall])),
    })
