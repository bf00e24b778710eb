"""Blocking checks on ``activations``: finite values, the model's width, the row count against the budget."""

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq

from assets.defs.activations.activations import MANIFEST
from assets.lakehouse.registry import model_location
from assets.shared.partitions import models_partitions
from assets.shared.resources import LakeResource


def _partition(lake: LakeResource, slug: str) -> tuple[Path, dict]:
    path = lake.lake().fetch("activations", model=slug)
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


@dg.asset_check(asset="activations", partitions_def=models_partitions, blocking=True)
def activations_finite(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """No NaN or Inf anywhere in the activation vectors."""
    path, _ = _partition(lake, context.partition_key)
    bad = 0
    for f in _shards(path):
        for g in range(f.num_row_groups):
            values = f.read_row_group(g, columns=["act"]).column("act").combine_chunks().values
            bad += int((~np.isfinite(values.to_numpy(zero_copy_only=False))).sum())
    return dg.AssetCheckResult(passed=bad == 0, metadata={"non_finite_values": bad})


@dg.asset_check(asset="activations", partitions_def=models_partitions, blocking=True)
def activations_width(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """Every shard's vector width equals the model's d_model (read from its config)."""
    from sae_models.lm.loading import d_model_of, load_config

    entry = lake.settings().model(context.partition_key)
    path, _ = _partition(lake, entry.slug)
    d_model = d_model_of(load_config(model_location(entry, lake.lake()), entry.revision, entry.trust_remote_code))
    widths = sorted({f.schema_arrow.field("act").type.list_size for f in _shards(path)})
    return dg.AssetCheckResult(passed=widths == [d_model], metadata={"d_model": d_model, "widths": str(widths)})


@dg.asset_check(asset="activations", partitions_def=models_partitions, blocking=True)
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
