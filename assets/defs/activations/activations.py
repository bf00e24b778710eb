"""``activations`` per model: residual-stream (or sublayer) activations at the registry's hook point, one row
per token, streamed into the lake."""

import json
import time

import dagster as dg
import numpy as np

from assets.lakehouse.config import ModelEntry, Settings
from assets.lakehouse.fingerprints import record
from assets.lakehouse.lake import Lake
from assets.lakehouse.registry import model_location
from assets.shared.automation import SETTINGS_CHANGED
from assets.shared.metadata import histogram_md, materialized
from assets.shared.partitions import models_partitions
from assets.shared.resources import GPU_OP_TAGS, LakeResource, torch_device

MANIFEST = "_manifest.json"
NORM_SAMPLE = 200_000
LOG_EVERY_S = 10.0


def _load(entry: ModelEntry, lake: Lake):
    from sae_models.lm import HookPointError, ModelLoadError, hook_module, load_lm

    try:
        lm = load_lm(model_location(entry, lake), revision=entry.revision, dtype=entry.dtype, device=torch_device(),
                     trust_remote_code=entry.trust_remote_code)
        hook_module(lm.model, entry.layer, entry.hook)
    except (ModelLoadError, HookPointError) as exc:
        raise dg.Failure(f"model {entry.slug}: {exc}") from None
    if entry.d_model is not None and entry.d_model != lm.d_model:
        raise dg.Failure(f"model {entry.slug}: lake.toml's [[models]] d_model is {entry.d_model}, but {entry.source} "
                         f"has d_model {lm.d_model}")
    return lm


def extract_to_lake(context, entry: ModelEntry, settings: Settings, lake: Lake, rec: dict) -> dict:
    """Stream activations of the corpus' activation split into lake/activations/model=<slug>/."""
    from sae_models.activation_store import ShardWriter
    from sae_models.lm import iter_activations

    docs = lake.read_split("activation")
    if docs.num_rows == 0:
        raise dg.Failure("corpus: the activation split has no documents (empty corpus)")
    lm = _load(entry, lake)
    cfg = settings.extraction
    pairs = zip(docs.column("doc_id").to_pylist(), docs.column("text").to_pylist(), strict=True)
    norms: list[np.ndarray] = []
    start = last_log = time.perf_counter()
    with lake.replace("activations", rec, model=entry.slug) as staging:
        writer = ShardWriter(staging, lm.d_model, cfg.act_dtype, cfg.row_group_mb)
        for batch in iter_activations(lm, pairs, cfg, layer=entry.layer, site=entry.hook, max_tokens=entry.tokens):
            writer.write(batch)
            if sum(len(n) for n in norms) < NORM_SAMPLE:
                norms.append(np.linalg.norm(batch.act.astype(np.float32), axis=1))
            if time.perf_counter() - last_log > LOG_EVERY_S:
                last_log = time.perf_counter()
                done = writer.rows_seen
                context.log.info(f"{entry.slug}: {done}/{entry.tokens} tokens "
                                 f"({done / (last_log - start):.0f} tok/s)")
        stats = writer.close()
        seconds = time.perf_counter() - start
        if stats.rows == 0:
            raise dg.Failure(f"model {entry.slug}: no tokens extracted (every document empty or masked)")
        manifest = {"tokens": stats.rows, "budget": entry.tokens, "exhausted": stats.rows < entry.tokens,
                    "d_model": lm.d_model, "layer": entry.layer, "hook": entry.hook, "dtype": cfg.act_dtype,
                    "source": entry.source, "dropped_outliers": stats.dropped_outliers}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return {"stats": stats, "seconds": seconds, "norms": np.concatenate(norms), "manifest": manifest}


@dg.asset(
    partitions_def=models_partitions, deps=["language_model", "corpus"], group_name="activations",
    kinds={"parquet"}, pool="gpu", op_tags=GPU_OP_TAGS, automation_condition=SETTINGS_CHANGED,
)
def activations(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Residual-stream (or MLP / attention output) activations at the registry's layer, one row per token."""
    settings = lake.settings()
    entry = settings.model(context.partition_key)
    rec = record("activations", settings, entry.slug)
    out = extract_to_lake(context, entry, settings, lake.lake(), rec)
    stats, seconds = out["stats"], out["seconds"]
    if out["manifest"]["exhausted"]:
        context.log.warning(f"{entry.slug}: corpus ran out at {stats.rows} of {entry.tokens} budgeted tokens")
    return materialized(rec, {
        "dagster/row_count": stats.rows,
        "bytes": stats.bytes,
        "shards": stats.shards,
        "tokens_per_second": round(stats.rows / seconds, 1),
        "dropped_outliers": stats.dropped_outliers,
        "hook_point": f"layer {entry.layer} {entry.hook}",
        "norm_histogram": histogram_md(out["norms"], f"{entry.slug}: activation norms", "L2 norm"),
    })
