"""Blocking checks on the selection tables: every live latent scored with finite values, the output score a
probability, the selected g values in [0, 2]."""

import dagster as dg
import numpy as np

from assets.defs.interpretability.latent_examples import live_latents
from assets.lakehouse.config import Settings
from assets.shared.checks import sae_table_checks
from assets.shared.partitions import model_and_sae, model_sae_partitions
from assets.shared.resources import LakeResource


@dg.asset_check(asset="feature_scores", partitions_def=model_sae_partitions, blocking=True)
def feature_scores_complete(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """One row per live latent, DeltaC finite, S_out in [0, 1]."""
    model, name = model_and_sae(context)
    lake_obj = lake.lake()
    t = lake_obj.read_table("feature_scores", model=model, sae=name)
    missing = sorted(set(live_latents(lake_obj, model, name).tolist()) - set(t.column("latent").to_pylist()))
    delta = np.concatenate([t.column(c).to_numpy() for c in ("delta_c1", "delta_c5")])
    s_out = t.column("output_score").to_numpy()
    bad = int((~np.isfinite(delta)).sum()) + int((~((s_out >= 0) & (s_out <= 1))).sum())
    return dg.AssetCheckResult(passed=t.num_rows > 0 and not missing and bad == 0,
                               metadata={"rows": t.num_rows, "missing_latents": str(missing[:20]), "bad_values": bad})


def selection_g_in_range(rows: list[dict], settings: Settings) -> dg.AssetCheckResult:
    """g, g_out, g_dtc and the choice on test are in [0, 2] (null only when no concept could be selected on)."""
    (row,) = rows
    values = {k: row[k] for k in ("g", "g_out", "g_dtc", "g_dtc_chosen_on_test", "g_random_rank")}
    nulls = row["n_pool"] == 0 and all(v is None for v in values.values())
    ok = nulls or all(v is not None and 0 <= v <= 2 for v in values.values())
    shown = {k: float(v) if v is not None else -1.0 for k, v in values.items()}
    return dg.AssetCheckResult(passed=ok, metadata={"n_pool": row["n_pool"], **shown})


selection_checks = sae_table_checks("selection", selection_g_in_range)
