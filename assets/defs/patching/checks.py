"""The blocking check on ``patching``: the model solves IOI (else no frontier means anything) and every threshold
has one row with finite, non-negative KL."""

import math

import dagster as dg

from assets.shared.partitions import model_and_sae, model_sae_partitions
from assets.shared.resources import LakeResource


@dg.asset_check(asset="patching", partitions_def=model_sae_partitions, blocking=True)
def patching_model_solves_ioi(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """The model answers the held-out IOI pairs at [patching] min_ioi_accuracy or better, and the frontier has
    one row per threshold with finite KL >= 0."""
    model, name = model_and_sae(context)
    cfg = lake.settings().patching
    rows = lake.lake().read_table("patching", model=model, sae=name).to_pylist()
    if not rows:
        return dg.AssetCheckResult(passed=False, description=f"{model} / {name}: the patching table is empty")
    accuracy, chance = rows[0]["ioi_accuracy"], rows[0]["chance_accuracy"]
    thresholds_ok = sorted(r["threshold"] for r in rows) == sorted(cfg.thresholds)
    finite = all(math.isfinite(r["kl"]) and r["kl"] >= -1e-6 for r in rows)
    solves = accuracy >= cfg.min_ioi_accuracy
    if not solves:
        description = (f"{model} answers IOI at {accuracy:.3f} on the held-out pairs (chance {chance:.1f}: one of "
                       f"the prompt's two names), below [patching] min_ioi_accuracy {cfg.min_ioi_accuracy}: its "
                       "patching frontiers measure nothing")
    elif not (thresholds_ok and finite):
        description = f"{model} / {name}: a threshold without its row, or a KL that is not finite and >= 0"
    else:
        description = f"{model} answers IOI at {accuracy:.3f} (chance {chance:.1f})"
    return dg.AssetCheckResult(passed=solves and thresholds_ok and finite, description=description,
                               metadata={"ioi_accuracy": accuracy, "chance_accuracy": chance, "rows": len(rows)})
