"""Blocking checks on ``autointerp``: scores in range, CONCEPT100 complete."""

import dagster as dg
import numpy as np

from assets.lakehouse.config import Settings
from assets.shared.checks import sae_table_checks


def autointerp_scores_in_range(rows: list[dict], settings: Settings) -> dg.AssetCheckResult:
    """Detection accuracy in [0, 1], simulation correlation in [-1, 1], no NaN."""
    det = np.array([r["detection_score"] for r in rows], float)
    sim = np.array([r["simulation_score"] for r in rows], float)
    bad = int((~((det >= 0) & (det <= 1))).sum() + (~((sim >= -1) & (sim <= 1))).sum())
    return dg.AssetCheckResult(passed=bad == 0, metadata={"out_of_range": bad, "latents": len(rows)})


def autointerp_concept_subset_complete(rows: list[dict], settings: Settings) -> dg.AssetCheckResult:
    """CONCEPT100 has min(n_concept, scored latents) members, every one scored with an explanation."""
    want = min(settings.autointerp.n_concept, len(rows))
    concept = [r for r in rows if r["concept100"]]
    explained = sum(bool(r["explanation"]) for r in concept)
    return dg.AssetCheckResult(passed=len(concept) == want and want > 0 and explained == want,
                               metadata={"concept100": len(concept), "expected": want, "explained": explained})


autointerp_checks = sae_table_checks("autointerp", autointerp_scores_in_range, autointerp_concept_subset_complete)


def true_interpretability_in_range(rows: list[dict], settings: Settings) -> dg.AssetCheckResult:
    """Each score a balanced accuracy in [0, 1] (null where the detection windows hold one class), never above
    best_in_sample; one row per latent; CONCEPT100 marked as autointerp marks it (toy world only: elsewhere no rows)."""
    scored = [(r["true_interpretability"], r["best_in_sample"]) for r in rows if r["true_interpretability"] is not None]
    bad = sum(not (0 <= t <= b <= 1) for t, b in scored)
    latents = [r["latent"] for r in rows]
    concept = sum(r["concept100"] for r in rows)
    want = min(settings.autointerp.n_concept, len(rows))
    passed = bad == 0 and len(set(latents)) == len(latents) and concept == want
    return dg.AssetCheckResult(passed=passed, metadata={"latents": len(rows), "scored": len(scored),
                                                        "out_of_range": bad, "concept100": concept})


true_interpretability_checks = sae_table_checks("true_interpretability", true_interpretability_in_range)
