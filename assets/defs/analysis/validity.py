"""``instrument_validity``: per model, does each SAE-level instrument rank the oracle dictionaries by their known
corruption level, and the SAEs by the toy world's judge-free true steerability (``sae_models.evals.validity``; the
values from sql/validity_oracles.sql and sql/validity_truth.sql)? With a blocking check
that the table is whole: every instrument of every model with oracles, every [oracle] level present."""

import dagster as dg

from assets.lakehouse.sql import analysis_connection, query_text
from assets.shared.automation import ON_ANY_UPDATE
from assets.shared.metadata import markdown_table
from assets.shared.resources import LakeResource

TABLE = "instrument_validity"
SOURCES = ["sae_summary", "interpretability", "autointerp", "true_interpretability", "steering_concepts",
           "true_steerability", "latent_stats", "feature_scores", "sae_metrics"]  # sql/validity_*.sql


def _fmt(value, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}g}" if abs(value) < 0.01 else f"{value:.{digits}f}"


@dg.asset(deps=SOURCES, group_name="analysis", kinds={"duckdb", "parquet"}, automation_condition=ON_ANY_UPDATE)
def instrument_validity(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Per model with oracle dictionaries and per instrument (mu, mu_balanced, mu_simulation, g, g - g_unsteered,
    g_dtc, concept F1, the two truths): Kendall tau-b against the known corruption level over the model's
    oracles, with its exact permutation p-value (a working instrument: near the lowest tau-b the tied levels
    allow); and per instrument and group of latents (all, single-word, other), tau-b against its judge-free
    truth over the model's SAEs."""
    from sae_models.evals.validity import run_validity
    from sae_models.toyworld.grammar import world_version

    lake_obj = lake.lake()
    with analysis_connection(lake_obj, lake_obj.tables(), SOURCES, []) as con:
        oracles = con.sql(query_text("validity_oracles")).pl().to_dicts()
        saes = con.sql(query_text("validity_truth")).pl().to_dicts()
        latents = con.sql(query_text("validity_latents")).pl().to_dicts()
        con.execute(f"SET VARIABLE rank_k = {lake.settings().selection.rank_k}")
        delta_c = con.sql(query_text("validity_delta_c")).pl().to_dicts()
    rows = run_validity(oracles, saes, latents, delta_c, world_version(), lake.settings().analysis.resamples)
    lake_obj.write_table(TABLE, rows)
    context.log.info("validity: " + "; ".join(f"{r.model} {r.instrument} vs {r.against} ({r.latents}) "
                                              f"{_fmt(r.tau_b)}" for r in rows))
    return dg.MaterializeResult(metadata={"dagster/row_count": len(rows), "validity": dg.MetadataValue.md(
        markdown_table([{"model": r.model, "instrument": r.instrument, "against": r.against, "latents": r.latents,
                         "n": r.n, "tau_b": _fmt(r.tau_b), "p": _fmt(r.p_value)} for r in rows]))})


def expected_truth_rows(models: set[str]) -> set[tuple[str, str, str, str]]:
    """(model, instrument, truth, latents) of every truth row a model with SAE truths must have: each instrument
    per group of latents, and DeltaC's per-latent row."""
    from sae_models.evals.validity import DELTA_C, LATENT_GROUPS, PER_LATENT, TRUE_STEERABILITY, TRUTH_OF

    return {(m, k, t, g) for m in models for k, t in TRUTH_OF.items() for g in LATENT_GROUPS
            if g == "all" or k != "g_dtc"} | {(m, DELTA_C, TRUE_STEERABILITY, PER_LATENT) for m in models}


@dg.asset_check(asset=instrument_validity, blocking=True, description=(
    "tau-b in [-1, 1]; one row per model, instrument, answer and group of latents; every [oracle] level x seed "
    "of each model with oracles present; every instrument against its truth in every group"))
def instrument_validity_complete(lake: LakeResource) -> dg.AssetCheckResult:
    from sae_models.evals.validity import DELTA_C, INSTRUMENTS, PER_LATENT

    lake_obj, settings = lake.lake(), lake.settings()
    rows = lake_obj.read_table(TABLE).to_pylist()
    with analysis_connection(lake_obj, lake_obj.tables(), SOURCES, []) as con:
        oracles = con.sql(query_text("validity_oracles")).pl().to_dicts()
    wanted = {(q, s) for q in settings.oracle.levels for s in settings.oracle.seeds}
    missing = {m: sorted(wanted - {(o["corruption"], o["seed"]) for o in oracles if o["model"] == m})
               for m in {o["model"] for o in oracles}}
    keys = [(r["model"], r["instrument"], r["against"], r["latents"]) for r in rows]
    out_of_range = [k for k, r in zip(keys, rows, strict=True) if r["tau_b"] is not None and abs(r["tau_b"]) > 1 + 1e-9]
    models = {r["model"] for r in rows if r["against"] == "corruption" and r["latents"] != PER_LATENT}
    complete = {(m, i, g) for m, i, a, g in keys if a == "corruption"} == (
        {(m, i, "all") for m in models for i in INSTRUMENTS} | {(m, DELTA_C, PER_LATENT) for m in models})
    truths = {k for k in keys if k[2] != "corruption"}
    truths_complete = truths == expected_truth_rows({k[0] for k in truths})
    passed = (not out_of_range and len(set(keys)) == len(keys) and complete and truths_complete
              and not any(missing.values()))
    return dg.AssetCheckResult(passed=passed, metadata={
        "out_of_range": str(out_of_range), "duplicates": len(keys) - len(set(keys)), "complete": complete,
        "truths_complete": truths_complete, "missing_oracles": str({m: v for m, v in missing.items() if v})})
