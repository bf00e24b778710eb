"""``sae_metrics`` and ``latent_stats`` per (model, variant): SAEBench core metrics on held-out tokens (one
row per SAE), and firing frequency, max and mean activation per latent, from one pass."""

from dataclasses import asdict

import dagster as dg
import numpy as np

from assets.shared.automation import SWEEP_EAGER
from assets.shared.metadata import markdown_table, materialized
from assets.shared.partitions import SweepPartition, model_sae_partitions, sweep_partition
from assets.shared.resources import GPU_OP_TAGS, LakeResource

GROUP = "saes"


def held_out_texts(p: SweepPartition, eval_reader, n_docs: int) -> list[str]:
    """The first ``n_docs`` held-out documents (in corpus order)."""
    docs = p.lake.read_split("activation")
    held = set()
    for keys, _ in eval_reader.rows(("doc_id",)):
        held.update(np.unique(keys["doc_id"]).tolist())
    ids, texts = docs.column("doc_id").to_pylist(), docs.column("text").to_pylist()
    return [t for d, t in zip(ids, texts, strict=True) if d in held][:n_docs]


@dg.multi_asset(
    specs=[dg.AssetSpec("sae_metrics", deps=["sae"], group_name=GROUP, kinds={"parquet"},
                        automation_condition=SWEEP_EAGER,
                        description="One row per SAE: SAEBench core metrics on held-out tokens."),
           dg.AssetSpec("latent_stats", deps=["sae"], group_name=GROUP, kinds={"parquet"},
                        automation_condition=SWEEP_EAGER,
                        description="One row per latent: firing frequency, max and mean activation, and the "
                                    "share of its variance the token's identity explains (eta squared; "
                                    "contextual below 0.5).")],
    partitions_def=model_sae_partitions, pool="gpu", op_tags=GPU_OP_TAGS,
)
def sae_metrics_and_latent_stats(context: dg.AssetExecutionContext, lake: LakeResource):
    from sae_models.sae.metrics import HeldOutSplit, TrainedVariant, downstream_metrics, reconstruction_metrics

    p = sweep_partition(context, lake)
    train_reader, eval_reader = p.readers()
    split = HeldOutSplit(p.settings.sweep.holdout_fraction, eval_reader.n_docs, train_reader.n_docs,
                         train_reader.n_rows)
    sae_model = p.load_sae()
    rows = eval_reader.rows(("token_id",))
    recon, stats = reconstruction_metrics(sae_model, ((keys["token_id"], acts) for keys, acts in rows))
    lm = p.load_lm()
    texts = held_out_texts(p, eval_reader, p.settings.sweep.metric_docs)
    down = downstream_metrics(sae_model.to(lm.device), lm, texts, p.entry.layer, p.entry.hook,
                              context=p.settings.extraction.context)
    identity = TrainedVariant(p.variant.architecture, p.variant.level, p.variant.target_l0, sae_model.cfg.d_sae)
    row = asdict(identity) | asdict(recon) | asdict(split) | asdict(down)
    rec, stats_rec = p.record("sae_metrics"), p.record("latent_stats")
    p.lake.write_table("sae_metrics", [row], rec, model=p.model, sae=p.name)
    latents = stats.to_arrow()
    p.lake.write_table("latent_stats", latents, stats_rec, model=p.model, sae=p.name)
    yield materialized(rec, {
        "metrics": dg.MetadataValue.md(markdown_table([row])),
        **{k: float(row[k]) for k in ("l0", "explained_variance", "ce_loss_score", "kl_div_score", "dead_fraction")
           if row[k] is not None},
        "held_out_docs": split.held_out_docs, "held_out_tokens": recon.tokens,
    }, "sae_metrics")
    yield materialized(stats_rec, {"dagster/row_count": latents.num_rows}, "latent_stats")
