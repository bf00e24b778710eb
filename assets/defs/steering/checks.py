"""Blocking checks on the steering tables: ratings in {0, 1, 2}, every concept's test rows present, g in
[0, 2]."""

import dagster as dg
import numpy as np

from assets.lakehouse.config import Settings
from assets.shared.checks import sae_table_checks

RATING_COLUMNS = ("concept_rating", "instruct_rating", "fluency_rating")


def steering_ratings_valid(rows: list[dict], settings: Settings) -> dg.AssetCheckResult:
    """Every rating is 0, 1 or 2 and every HM in [0, 2]."""
    bad = sum(int((~np.isin([r[c] for r in rows], (0, 1, 2))).sum()) for c in RATING_COLUMNS)
    hm = np.array([r["hm"] for r in rows], float)
    bad_hm = int((~((hm >= 0) & (hm <= 2))).sum())
    return dg.AssetCheckResult(passed=len(rows) > 0 and bad == 0 and bad_hm == 0,
                               metadata={"ratings_out_of_range": bad, "hm_out_of_range": bad_hm, "rows": len(rows)})


def steering_test_rows_complete(rows: list[dict], settings: Settings) -> dg.AssetCheckResult:
    """Every rated concept has its test instructions (instructions_per_concept - dev_instructions) at every
    factor, the unsteered one included."""
    cfg = settings.steering
    want = cfg.instructions_per_concept - cfg.dev_instructions
    counts: dict[tuple, int] = {}
    for r in rows:
        if r["split"] == "test":
            counts[(r["latent"], r["factor"])] = counts.get((r["latent"], r["factor"]), 0) + 1
    latents = {r["latent"] for r in rows}
    factors = (0.0, *cfg.factors)
    short = sorted({lat for lat in latents for f in factors if counts.get((lat, f), 0) != want})
    return dg.AssetCheckResult(passed=bool(latents) and not short,
                               metadata={"concepts": len(latents), "test_rows_per_factor": want,
                                         "incomplete_concepts": str(short[:20])})


def steering_g_in_range(rows: list[dict], settings: Settings) -> dg.AssetCheckResult:
    """g and its unsteered baseline are in [0, 2]."""
    (row,) = rows
    values = {k: row[k] for k in ("g", "g_unsteered", "g_chosen_on_test")}
    ok = all(v is not None and 0 <= v <= 2 for v in values.values())
    return dg.AssetCheckResult(passed=ok, metadata={k: float(v) if v is not None else -1.0 for k, v in values.items()})


steering_checks = sae_table_checks("steering", steering_ratings_valid, steering_test_rows_complete)
steering_summary_checks = sae_table_checks("steering_summary", steering_g_in_range)


def true_steerability_in_range(rows: list[dict], settings: Settings) -> dg.AssetCheckResult:
    """Each rise is a difference of probabilities, in [-1, 1], or null where the latent's concept has no answer slot;
    a chosen factor is one of [steering] factors; one row per latent (toy world only: elsewhere no rows)."""
    rises = [r["rise_test"] for r in rows if r["rise_test"] is not None]
    bad_rise = sum(not (-1 <= x <= 1) for x in rises)
    bad_factor = sum(r["factor"] is not None and r["factor"] not in settings.steering.factors for r in rows)
    latents = [r["latent"] for r in rows]
    passed = bad_rise == 0 and bad_factor == 0 and len(set(latents)) == len(latents)
    return dg.AssetCheckResult(passed=passed, metadata={"latents": len(rows), "with_a_rise": len(rises),
                                                        "out_of_range": bad_rise, "unknown_factor": bad_factor})


true_steerability_checks = sae_table_checks("true_steerability", true_steerability_in_range)
