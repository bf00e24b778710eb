"""``feature_scores`` per (model, variant): every live latent's logit lens, output score S_out and Delta Token
Confidence; and ``selection``: the DTC set chosen on the dev half of the steering rows, g_dtc on the test half,
the output-score baseline g_out and the gain."""

import dagster as dg

from assets.defs.interpretability.latent_examples import live_latents
from assets.shared.automation import SWEEP_EAGER
from assets.shared.metadata import markdown_table, materialized
from assets.shared.partitions import SweepPartition, model_sae_partitions, sweep_partition
from assets.shared.resources import GPU_OP_TAGS, LakeResource, torch_device
from sae_models.arrow import columns

GROUP = "selection"
SUMMARY_METADATA = ("g", "g_out", "g_dtc", "g_dtc_chosen_on_test", "g_random_rank", "gain", "gain_out", "size",
                    "n_pool")


def _extremes_md(rows: list, k: int = 5) -> dg.MetadataValue:
    """The k most UP and k most DOWN latents with their logit lens."""
    ranked = sorted(rows, key=lambda r: r.up_rank)
    shown = ranked[:k] + ranked[-k:]
    return dg.MetadataValue.md(markdown_table([
        {"latent": r.latent, "up_rank": r.up_rank, "delta_c1": round(r.delta_c1, 4), "delta_c5": round(r.delta_c5, 4),
         "output_score": round(r.output_score, 4), "logit_lens": " ".join(r.lens_tokens[:6])} for r in shown]))


@dg.asset(
    partitions_def=model_sae_partitions, deps=["sae", "latent_stats", "language_model"], group_name=GROUP,
    kinds={"parquet"}, pool="gpu", op_tags=GPU_OP_TAGS, automation_condition=SWEEP_EAGER,
)
def feature_scores(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per live latent: the logit lens of its decoder direction, S_out, DeltaC_1 and DeltaC_5 on the
    neutral prompt, and its UP and DOWN ranks."""
    from sae_models.evals.feature_scores import FeatureScoreError, run_feature_scores

    p = sweep_partition(context, lake)
    cfg = p.settings.selection
    sae = p.load_sae(torch_device())
    latents = [int(f) for f in live_latents(p.lake, p.model, p.name)]
    corpus_max = max(p.lake.read_table("latent_stats", model=p.model, sae=p.name).column("max_activation").to_pylist())
    try:
        run = run_feature_scores(p.load_lm(), sae, p.entry.layer, p.entry.hook, latents, cfg, context.log.info,
                                 corpus_max)
    except FeatureScoreError as exc:
        raise dg.Failure(f"{p.model} / {p.name}: [selection] {exc}") from None
    rec = p.record("feature_scores")
    table = p.lake.write_table("feature_scores", run.rows, rec, model=p.model, sae=p.name)
    prompt = run.summary
    context.log.info(f"{p.name}: {len(run.rows)} latents scored in {prompt.seconds:.1f}s")
    return materialized(rec, {
        "path": dg.MetadataValue.path(str(table)), "dagster/row_count": len(run.rows), "a_max": prompt.a_max,
        "base_next_token": prompt.base_token, "seconds": prompt.seconds,
        "latents_per_s": len(run.rows) / prompt.seconds,
        "up_and_down": _extremes_md(run.rows),
    })


def _pool(p: SweepPartition, rank_k: int) -> list:
    """The steered concepts with their DeltaC, S_out and steering scores."""
    from sae_models.evals.selection import PoolLatent

    scores = {r["latent"]: r for r in p.lake.read_table("feature_scores", model=p.model, sae=p.name).to_pylist()}
    concepts = p.lake.read_table("steering_concepts", model=p.model, sae=p.name).to_pylist()
    return [PoolLatent(c["latent"], scores[c["latent"]][f"delta_c{rank_k}"], scores[c["latent"]]["output_score"],
                       c["dev_hm"], c["test_hm"]) for c in concepts if c["latent"] in scores]


@dg.asset(
    partitions_def=model_sae_partitions, deps=["feature_scores", "steering_concepts", "sae_metrics"],
    group_name=GROUP, kinds={"parquet"}, automation_condition=SWEEP_EAGER,
)
def selection(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per SAE: g, g_out and g_dtc (set chosen on dev, scored on test), the optimistic choice on test,
    the chosen set and the gains in percent."""
    from sae_models.evals.selection import run_selection

    p = sweep_partition(context, lake)
    cfg = p.settings.selection
    result = run_selection(_pool(p, cfg.rank_k), cfg, p.identity())
    summary, sets = result.summary, result.rows
    rec = p.record("selection")
    table = p.lake.write_table("selection", [summary], rec, model=p.model, sae=p.name)
    context.log.info(f"{p.name}: g {summary.g}, g_out {summary.g_out}, g_dtc {summary.g_dtc} "
                     f"({summary.chosen_set}, gain {summary.gain})")
    values = columns(summary)
    return materialized(rec, {
        "path": dg.MetadataValue.path(str(table)),
        "candidates": dg.MetadataValue.md(markdown_table([
            {"set": s.name, "latents": " ".join(map(str, s.latents)), "dev": round(s.dev, 4), "test": round(s.test, 4)}
            for s in sets])),
        **{k: float(values[k]) for k in SUMMARY_METADATA if values[k] is not None},
    })
