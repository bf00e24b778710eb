"""Blocking checks on ``autointerp``: scores in range, CONCEPT100 complete."""

import dagster as dg
import pyarrow as pa

from assets.shared.partitions import model_and_sae, model_sae_partitions
from assets.shared.resources import LakeResource


def _scores(lake: LakeResource, context) -> pa.Table:
    model, name = model_and_sae(context)
    return lake.lake().read_table("autointerp", model=model, sae=name)


@dg.asset_check(asset="autointerp", partitions_def=model_sae_partitions, blocking=True)
def autointerp_scores_in_range(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """Detection accuracy in [0, 1], simulation correlation in [-1, 1], no NaN."""
    t = _scores(lake, context)
    det, sim = t.column("detection_score").to_numpy(), t.column("simulation_score").to_numpy()
    bad = int((~((det >= 0) & (det <= 1))).sum() + (~((sim >= -1) & (sim <= 1))).sum())
    return dg.AssetCheckResult(passed=bad == 0, metadata={"out_of_range": bad, "latents": t.num_rows})


@dg.asset_check(asset="autointerp", partitions_def=model_sae_partitions, blocking=True)
def autointerp_concept_subset_complete(context: dg.AssetCheckExecutionContext,
                                       lake: LakeResource) -> dg.AssetCheckResult:
    """CONCEPT100 has min(n_concept, scored latents) members, every one scored with an explanation."""
    t = _scores(lake, context)
    want = min(lake.settings().autointerp.n_concept, t.num_rows)
    concept = t.filter(t.column("concept100"))
    explained = sum(bool(e) for e in concept.column("explanation").to_pylist())
    return dg.AssetCheckResult(passed=concept.num_rows == want and want > 0 and explained == want,
                               metadata={"concept100": concept.num_rows, "expected": want, "explained": explained})
