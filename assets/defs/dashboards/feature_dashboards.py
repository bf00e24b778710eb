"""``latent_profiles`` and ``feature_dashboards`` per (model, variant): each latent's activation histogram and
logit-lens extremes (a pass of the SAE over held-out activations), then the SAE's dashboard, a static site at
lake/feature_dashboards/model=/sae=/ that shows every per-SAE table of the lake latent by latent. A table not yet
materialized for the SAE (an external SAE before its evaluations) leaves its panels saying so."""

import dagster as dg

from assets.shared.automation import SWEEP_EAGER
from assets.shared.metadata import materialized, page_links
from assets.shared.partitions import SweepPartition, model_sae_partitions, sweep_partition
from assets.shared.resources import GPU_OP_TAGS, LakeResource, torch_device

GROUP = "dashboards"
SHOWN = ["latent_profiles", "autointerp", "latent_examples", "feature_scores", "steering_concepts", "steering",
         "steering_generations", "latent_purity"]
CARDS = [("sae_metrics", "l0", "L0"), ("sae_metrics", "explained_variance", "explained variance"),
         ("sae_metrics", "ce_loss_score", "CE loss score"), ("interpretability", "mu", "mu (detection)"),
         ("interpretability", "mu_simulation", "mu (simulation)"), ("selection", "g", "g (steering)"),
         ("selection", "g_dtc", "g after DTC selection")]


def _rows(p: SweepPartition, table: str) -> list[dict]:
    return p.lake.rows(table, model=p.model, sae=p.name)


def _cards(rows: dict[str, list[dict]]) -> list[tuple[str, str]]:
    """The SAE's headline figures from the rows of ``CARDS``' tables, for those materialized."""
    return [(label, f"{rows[t][0][k]:.3f}") for t, k, label in CARDS if rows[t] and rows[t][0][k] is not None]


@dg.asset(partitions_def=model_sae_partitions, deps=["sae", "latent_stats", "language_model"], group_name=GROUP,
          kinds={"parquet"}, pool="gpu", op_tags=GPU_OP_TAGS, automation_condition=SWEEP_EAGER)
def latent_profiles(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per latent: its activation histogram on held-out tokens and the logit lens's most promoted and most
    suppressed tokens with their logits."""
    from sae_models.evals.profiles import ProfileError, run_latent_profiles

    p = sweep_partition(context, lake)
    stats = {r["latent"]: r["max_activation"] for r in _rows(p, "latent_stats")}
    _, eval_reader = p.readers()
    try:
        run = run_latent_profiles(p.load_lm(), p.load_sae(torch_device()), (a for _, a in eval_reader.rows(())),
                                  stats, p.settings.dashboards, context.log.info)
    except ProfileError as exc:
        raise dg.Failure(f"{p.model} / {p.name}: {exc}") from None
    rec = p.record("latent_profiles")
    p.lake.write_table("latent_profiles", run.rows, rec, model=p.model, sae=p.name)
    return materialized(rec, {"dagster/row_count": len(run.rows), "held_out_tokens": run.summary.tokens,
                              "seconds": run.summary.seconds})


@dg.asset(partitions_def=model_sae_partitions, deps=["latent_profiles", "latent_stats", "sae_metrics",
                                                     "interpretability", "selection", *SHOWN],
          group_name=GROUP, kinds={"html"}, automation_condition=SWEEP_EAGER)
def feature_dashboards(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """The SAE's feature dashboard: a static site (no server, opens from file://) with every latent, sortable and
    filterable, and a page per latent."""
    from assets.dashboards.site import SAETables, dashboard_files
    from assets.lakehouse.registry import model_location
    from sae_models.evals.autointerp import TokenText
    from sae_models.lm import load_tokenizer

    p = sweep_partition(context, lake)
    tables = SAETables(_rows(p, "latent_stats"), **{t: _rows(p, t) for t in SHOWN})
    text = TokenText(load_tokenizer(model_location(p.entry, p.lake), p.entry.revision, p.entry.trust_remote_code))
    headline = {t: _rows(p, t) for t in {t for t, _, _ in CARDS}}
    (metrics,) = headline["sae_metrics"]
    files = dashboard_files(p.model, p.name, tables, lambda t: text([t])[0], p.settings.dashboards.latents_per_page,
                            metrics["d_sae"], _cards(headline), p.settings.selection.rank_k)
    rec = p.record("feature_dashboards")
    with p.lake.replace("feature_dashboards", rec, model=p.model, sae=p.name) as staging:
        for name, content in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(content, encoding="utf-8")
    index = p.lake.uri("feature_dashboards", model=p.model, sae=p.name) + "/index.html"
    context.log.info(f"{p.model} / {p.name}: dashboard of {len(tables.latent_stats)} latents at {index}")
    return materialized(rec, {**page_links(index), "latents": len(tables.latent_stats),
                              "bytes": sum(len(t.encode()) for t in files.values())})
