"""Blocking checks on ``sae_metrics``: every metric finite, L0 near its target, explained variance above the
floor of lake.toml."""

import dagster as dg
import numpy as np

from assets.lakehouse.config import Settings
from assets.shared.checks import sae_table_checks


def sae_metrics_finite(rows: list[dict], settings: Settings) -> dg.AssetCheckResult:
    """Every metric is a finite number; the dead-latent fraction is reported."""
    (row,) = rows
    bad = [k for k, v in row.items() if isinstance(v, float) and not np.isfinite(v)]
    return dg.AssetCheckResult(passed=not bad, metadata={"non_finite": str(bad),
                                                         "dead_fraction": float(row["dead_fraction"])})


def sae_l0_near_target(rows: list[dict], settings: Settings) -> dg.AssetCheckResult:
    """Held-out L0 against the target: TopK exact (k), BatchTopK and JumpReLU within a factor of 2.
    Architectures without a target (L1-penalised, baselines) pass and report their L0."""
    (row,) = rows
    target, l0 = row["target_l0"], row["l0"]
    if target is None:
        ok = True
    elif row["architecture"] == "topk":
        ok = abs(l0 - target) < 1e-6 * target + 0.01
    else:
        ok = target / 2 <= l0 <= 2 * target
    return dg.AssetCheckResult(passed=ok, metadata={"l0": float(l0), "target_l0": target or 0.0})


def sae_explained_variance(rows: list[dict], settings: Settings) -> dg.AssetCheckResult:
    """Explained variance on held-out tokens is above lake.toml's floor (an oracle dictionary passes: it holds
    one latent per known concept, not a reconstruction)."""
    (row,) = rows
    floor = settings.sweep.min_explained_variance
    return dg.AssetCheckResult(passed=row["explained_variance"] >= floor or row["architecture"] == "oracle",
                               metadata={"explained_variance": float(row["explained_variance"]), "floor": floor})


sae_metrics_checks = sae_table_checks("sae_metrics", sae_metrics_finite, sae_l0_near_target, sae_explained_variance)
