"""``latent_profiles`` and ``feature_dashboards`` per (model, variant): each latent's activation histogram and
logit-lens extremes, then the SAE's dashboard, a static site at lake/feature_dashboards/model=/sae=/ that shows
every per-SAE table of the lake latent by latent. A table not yet materialized for the SAE (an external SAE
before its evaluations) leaves its panels saying so."""

from dataclasses import asdict

import dagster as dg

from assets.shared.automation import SWEEP_EAGER
from assets.shared.metadata import materialized
from assets.shared.partitions import SweepPartition, model_sae_partitions, sweep_partition
from assets.shared.resources import GPU_OP_TAGS, LakeResource, torch_device

GROUP = "dashboards"
SHOWN = ["autointerp", "latent_examples", "feature_scores", "steering_concepts", "steering", "steering_generations",
         "latent_purity"]
CARDS = [("sae_metrics", "l0", "L0"), ("sae_metrics", "explained_variance", "explained variance"),
         ("sae_metrics", "ce_loss_score", "CE loss score"), ("interpretability", "mu", "mu (detection)"),
         ("interpretability", "mu_simulation", "mu (simulation)"), ("selection", "g", "g (steering)"),
         ("selection", "g_dtc", "g after DTC selection")]


def _rows(p: SweepPartition, table: str) -> list[dict]:
    """The partition's rows of ``table``; none when it has not been materialized for this SAE."""
    try:
        return p.lake.read_table(table, model=p.model, sae=p.name).to_pylist()
    except FileNotFoundError:
        return []


def _cards(p: SweepPartition) -> list[tuple[str, str]]:
    """The SAE's headline figures, each from its own table, for those materialized."""
    rows = {t: _rows(p, t) for t in {t for t, _, _ in CARDS}}
    return [(label, f"{rows[t][0][k]:.3f}") for t, k, label in CARDS if rows[t] and rows[t][0][k] is not None]


def _token_text(tokenizer):
    """token id -> its text as it reads in a window: what the tokenizer decodes it to alone, after a space when
    the tokenizer puts spaces between tokens (a word-level one) rather than in them; remembered. A window's
    padding past the edge of its document (a negative id) is no text."""
    special = set(tokenizer.all_special_ids)
    ordinary = (i for i in range(len(tokenizer)) if i not in special)
    a, b = next(ordinary), next(ordinary)
    joiner = " " if tokenizer.decode([a, b]) == f"{tokenizer.decode([a])} {tokenizer.decode([b])}" else ""
    seen: dict[int, str] = {}

    def text(token: int) -> str:
        if token not in seen:
            seen[token] = joiner + tokenizer.decode([token]) if token >= 0 else ""
        return seen[token]
    return text


@dg.multi_asset(
    specs=[dg.AssetSpec("latent_profiles", deps=["sae", "latent_stats"], group_name=GROUP, kinds={"parquet"},
                        automation_condition=SWEEP_EAGER,
                        description="One row per latent: its activation histogram on held-out tokens and the logit "
                                    "lens's most promoted and most suppressed tokens with their logits."),
           dg.AssetSpec("feature_dashboards", deps=["latent_profiles", "sae_metrics", "interpretability", "selection",
                                                    *SHOWN],
                        group_name=GROUP, kinds={"html"}, automation_condition=SWEEP_EAGER,
                        description="The SAE's feature dashboard: a static site (no server, opens from file://) "
                                    "with every latent, sortable and filterable, and a page per latent.")],
    partitions_def=model_sae_partitions, pool="gpu", op_tags=GPU_OP_TAGS,
)
def latent_profiles_and_feature_dashboards(context: dg.AssetExecutionContext, lake: LakeResource):
    from assets.dashboards.site import SAETables, dashboard_files
    from sae_models.evals.profiles import ProfileError, run_latent_profiles

    p = sweep_partition(context, lake)
    cfg = p.settings.dashboards
    stats = p.lake.read_table("latent_stats", model=p.model, sae=p.name).to_pylist()
    _, eval_reader = p.readers()
    lm = p.load_lm()
    try:
        run = run_latent_profiles(lm, p.load_sae(torch_device()), (acts for _, acts in eval_reader.rows(())),
                                  [r["max_activation"] for r in stats], cfg, context.log.info)
    except ProfileError as exc:
        raise dg.Failure(f"{p.model} / {p.name}: {exc}") from None
    profiles_rec, site_rec = p.record("latent_profiles"), p.record("feature_dashboards")
    p.lake.write_table("latent_profiles", run.rows, profiles_rec, model=p.model, sae=p.name)
    yield materialized(profiles_rec, {"dagster/row_count": len(run.rows), "held_out_tokens": run.summary.tokens,
                                      "seconds": run.summary.seconds}, "latent_profiles")
    tables = SAETables(stats, [asdict(r) for r in run.rows], **{t: _rows(p, t) for t in SHOWN})
    files = dashboard_files(p.model, p.name, tables, _token_text(lm.tokenizer), cfg.latents_per_page,
                            run.summary.tokens, _cards(p))
    with p.lake.replace("feature_dashboards", site_rec, model=p.model, sae=p.name) as staging:
        for name, text in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text, encoding="utf-8")
    index = p.lake.uri("feature_dashboards", model=p.model, sae=p.name) + "/index.html"
    context.log.info(f"{p.model} / {p.name}: dashboard of {len(stats)} latents at {index}")
    yield materialized(site_rec, {"index": dg.MetadataValue.path(index), "latents": len(stats),
                                  "bytes": sum(len(t.encode()) for t in files.values())}, "feature_dashboards")
