"""The ``activations`` asset (per model) and the checks that guard it."""

import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq

from assets.config import ModelEntry, Settings
from assets.corpus import corpus, read_split
from assets.lake import Lake
from assets.metadata import histogram_md
from assets.models import language_model, model_location
from assets.partitions import models_partitions
from assets.resources import GPU_OP_TAGS, LakeResource, torch_device

MANIFEST = "_manifest.json"
NORM_SAMPLE = 200_000
LOG_EVERY_S = 10.0


def _extraction_config(entry: ModelEntry, settings: Settings):
    from sae_models.lm import ExtractionConfig

    ex = settings.extraction
    return ExtractionConfig(layer=entry.layer, site=entry.hook, batch_size=ex.batch_size, context=ex.context,
                            max_tokens=entry.tokens, act_dtype=ex.act_dtype,
                            drop_outlier_norm=ex.drop_outlier_norm)


def _load(entry: ModelEntry, lake: Lake):
    from sae_models.lm import HookPointError, ModelLoadError, hook_module, load_lm

    try:
        lm = load_lm(model_location(entry, lake), revision=entry.revision, dtype=entry.dtype, device=torch_device(),
                     trust_remote_code=entry.trust_remote_code)
        hook_module(lm.model, entry.layer, entry.hook)
    except (ModelLoadError, HookPointError) as exc:
        raise dg.Failure(f"model {entry.slug}: {exc}") from None
    return lm


def extract_to_lake(context, entry: ModelEntry, settings: Settings, lake: Lake) -> dict:
    """Stream activations of the corpus' activation split into lake/activations/model=<slug>/."""
    from sae_models.activation_store import ShardWriter
    from sae_models.lm import iter_activations

    docs = read_split(lake, "activation")
    if docs.num_rows == 0:
        raise dg.Failure("corpus: the activation split has no documents (empty corpus)")
    lm = _load(entry, lake)
    cfg = _extraction_config(entry, settings)
    pairs = zip(docs.column("doc_id").to_pylist(), docs.column("text").to_pylist(), strict=True)
    norms: list[np.ndarray] = []
    start = last_log = time.perf_counter()
    with lake.replace("activations", model=entry.slug) as staging:
        writer = ShardWriter(staging, lm.d_model, cfg.act_dtype, settings.extraction.row_group_mb)
        for batch in iter_activations(lm, pairs, cfg):
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
    partitions_def=models_partitions, deps=[language_model, corpus], group_name="models", kinds={"parquet"},
    pool="gpu", op_tags=GPU_OP_TAGS,
)
def activations(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Residual-stream (or MLP / attention output) activations at the registry's layer, one row per token."""
    settings = lake.settings()
    entry = settings.model(context.partition_key)
    out = extract_to_lake(context, entry, settings, lake.lake())
    stats, seconds = out["stats"], out["seconds"]
    if out["manifest"]["exhausted"]:
        context.log.warning(f"{entry.slug}: corpus ran out at {stats.rows} of {entry.tokens} budgeted tokens")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": stats.rows,
        "bytes": stats.bytes,
        "shards": stats.shards,
        "tokens_per_second": round(stats.rows / seconds, 1),
        "dropped_outliers": stats.dropped_outliers,
        "hook_point": f"layer {entry.layer} {entry.hook}",
        "norm_histogram": histogram_md(out["norms"], f"{entry.slug}: activation norms", "L2 norm"),
    })


# --- checks -------------------------------------------------------------------------------------------


def _partition(lake: LakeResource, slug: str) -> tuple[Path, dict]:
    path = lake.lake().path("activations", model=slug)
    manifest = path / MANIFEST
    if not manifest.is_file():
        raise dg.Failure(f"activations for {slug}: no {MANIFEST} at {path} (materialize activations first)")
    return path, json.loads(manifest.read_text())


def _shards(path: Path) -> list[pq.ParquetFile]:
    files = []
    for shard in sorted(path.glob("*.parquet")):
        try:
            files.append(pq.ParquetFile(shard))
        except Exception as exc:  # any unreadable file is the finding, not a crash
            raise dg.Failure(f"{shard}: corrupt Parquet shard ({exc})") from None
    return files


@dg.asset_check(asset=activations, partitions_def=models_partitions, blocking=True)
def activations_finite(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """No NaN or Inf anywhere in the activation vectors."""
    path, _ = _partition(lake, context.partition_key)
    bad = 0
    for f in _shards(path):
        for g in range(f.num_row_groups):
            values = f.read_row_group(g, columns=["act"]).column("act").combine_chunks().values
            bad += int((~np.isfinite(values.to_numpy(zero_copy_only=False))).sum())
    return dg.AssetCheckResult(passed=bad == 0, metadata={"non_finite_values": bad})


@dg.asset_check(asset=activations, partitions_def=models_partitions, blocking=True)
def activations_width(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """Every shard's vector width equals the model's d_model (read from its config)."""
    from sae_models.lm.loading import d_model_of, load_config

    entry = lake.settings().model(context.partition_key)
    path, _ = _partition(lake, entry.slug)
    d_model = d_model_of(load_config(model_location(entry, lake.lake()), entry.revision, entry.trust_remote_code))
    widths = sorted({f.schema_arrow.field("act").type.list_size for f in _shards(path)})
    return dg.AssetCheckResult(passed=widths == [d_model], metadata={"d_model": d_model, "widths": str(widths)})


@dg.asset_check(asset=activations, partitions_def=models_partitions, blocking=True)
def activations_row_count(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """Rows equal the extracted token count, which equals the budget unless the corpus ran out (a warning)."""
    path, manifest = _partition(lake, context.partition_key)
    rows = sum(f.metadata.num_rows for f in _shards(path))
    consistent = rows == manifest["tokens"]
    return dg.AssetCheckResult(
        passed=consistent and rows == manifest["budget"],
        severity=dg.AssetCheckSeverity.WARN if consistent else dg.AssetCheckSeverity.ERROR,
        metadata={"rows": rows, "tokens": manifest["tokens"], "budget": manifest["budget"]},
    )
