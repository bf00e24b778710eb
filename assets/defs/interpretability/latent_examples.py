"""``latent_examples`` per (model, variant): top, importance-weighted and random windows of the scored
latents, with tokens and per-token activations, gathered in one streaming pass over the activations."""

import resource
import sys
import time
from collections.abc import Iterator

import dagster as dg

from assets.shared.automation import SWEEP_EAGER
from assets.shared.metadata import materialized, table_metadata
from assets.shared.partitions import model_sae_partitions, sweep_partition
from assets.shared.resources import GPU_OP_TAGS, LakeResource, torch_device

GROUP = "interpretability"
LOG_EVERY_S = 10.0


def live_latents(lake, model: str, name: str):
    """Latents that fired on held-out tokens (from ``latent_stats``)."""
    stats = lake.read_table("latent_stats", model=model, sae=name)
    return stats.column("latent").to_numpy()[stats.column("firing_frequency").to_numpy() > 0]


def _logged(rows: Iterator, total: int, log) -> Iterator:
    seen, start, last = 0, time.perf_counter(), time.perf_counter()
    for keys, acts in rows:
        seen += len(acts)
        if time.perf_counter() - last > LOG_EVERY_S:
            last = time.perf_counter()
            log(f"latent examples: {seen:,}/{total:,} tokens ({seen / (last - start):,.0f} tokens/s)")
        yield keys, acts


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@dg.asset(
    partitions_def=model_sae_partitions, deps=["sae", "latent_stats"], group_name=GROUP, kinds={"parquet"},
    pool="gpu", op_tags=GPU_OP_TAGS, automation_condition=SWEEP_EAGER,
)
def latent_examples(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Per scored latent (a seeded sample of ``[autointerp] n_latents`` live latents), 12 top, 7
    importance-weighted and 10 random windows. Latents that fired in too few documents to explain and score
    are dropped and counted."""
    from sae_models.activation_store import ActivationReader
    from sae_models.evals.autointerp import run_latent_examples

    p = sweep_partition(context, lake)
    live = live_latents(p.lake, p.model, p.name)
    reader = ActivationReader(p.lake.fetch("activations", model=p.model))
    rows = _logged(reader.rows(("doc_id", "pos", "token_id")), reader.n_rows, context.log.info)
    result = run_latent_examples(p.load_sae(), rows, live, p.settings.autointerp, device=torch_device())
    table, run = result.rows, result.summary
    rec = p.record("latent_examples")
    p.lake.write_table("latent_examples", table, rec, model=p.model, sae=p.name)
    context.log.info(f"{p.name}: {run.sampled} latents over {reader.n_rows:,} tokens in {run.seconds:.1f}s; "
                     f"{run.too_few} with too few activations")
    return materialized(rec, {
        **table_metadata(table.drop_columns(["tokens", "acts"])),
        "live_latents": run.live, "scored_latents": run.sampled - run.too_few, "too_few_activations": run.too_few,
        "seconds": run.seconds, "latents_per_s": run.sampled / run.seconds,
        "tokens_per_s": reader.n_rows / run.seconds,
        "peak_rss_mb": _peak_rss_mb(),
    })
