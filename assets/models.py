"""The ``language_model`` asset: a toy LM trained on the corpus, or a hub / local model checked for use."""

from dataclasses import asdict

import dagster as dg
import pyarrow as pa

from assets.config import ModelEntry
from assets.corpus import corpus, read_split
from assets.lake import Lake
from assets.metadata import markdown_table
from assets.partitions import models_partitions
from assets.resources import GPU_OP_TAGS, LakeResource


def model_location(entry: ModelEntry, lake: Lake) -> str:
    """Where the weights load from: the lake for toy models, else the registry's source."""
    return str(lake.path("models", model=entry.slug)) if entry.is_toy else entry.source


def _train_toy(context: dg.AssetExecutionContext, entry: ModelEntry, lake: Lake) -> dict:
    from sae_models.toyworld import ToyModelConfig, train_toy_lm

    texts = {s: read_split(lake, s).column("text").to_pylist() for s in ("lm_train", "lm_eval")}
    cfg = ToyModelConfig(**entry.toy.model_dump())
    with lake.replace("models", model=entry.slug) as staging:
        report = train_toy_lm(texts["lm_train"], texts["lm_eval"], cfg, staging, log=context.log.info)
    return {"family": cfg.family, "n_layers": cfg.layers, "d_model": cfg.hidden, **asdict(report)}


def _check_external(entry: ModelEntry) -> dict:
    """Hub / local models are not copied: resolve the config (offline cache or directory) and the layer."""
    from sae_models.lm.loading import ModelLoadError, d_model_of, load_config, n_layers_of

    try:
        config = load_config(entry.source, entry.revision, entry.trust_remote_code)
    except ModelLoadError as exc:
        raise dg.Failure(str(exc)) from None
    n_layers = n_layers_of(config)
    if entry.layer >= n_layers:
        raise dg.Failure(f"model {entry.slug}: layer {entry.layer} is out of range ({n_layers} layers)")
    return {"family": config.model_type, "n_layers": n_layers, "d_model": d_model_of(config)}


LM_EVAL_FIELDS = ["family", "n_layers", "d_model", "held_out_loss", "unigram_cross_entropy",
                  "topic_word_accuracy", "topic_consistency", "ioi_accuracy", "chance_ioi_accuracy",
                  "parameters", "steps", "train_seconds"]
LM_EVAL_SCHEMA = pa.schema([("source", pa.string())] + [
    (f, pa.string() if f == "family" else pa.int64() if f in ("n_layers", "d_model", "parameters", "steps")
     else pa.float64()) for f in LM_EVAL_FIELDS
])


@dg.asset(
    partitions_def=models_partitions, deps=[corpus], group_name="models", kinds={"pytorch"},
    pool="gpu", op_tags=GPU_OP_TAGS,
)
def language_model(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Toy models are trained on the corpus and saved as Hugging Face directories in lake/models/;
    hub and local models are resolved (offline) and their layer checked. One lm_eval row per model."""
    entry = lake.settings().model(context.partition_key)
    lake_obj = lake.lake()
    info = _train_toy(context, entry, lake_obj) if entry.is_toy else _check_external(entry)
    row = {"source": entry.source, **{f: info.get(f) for f in LM_EVAL_FIELDS}}
    lake_obj.write_table("lm_eval", pa.Table.from_pylist([row], schema=LM_EVAL_SCHEMA), model=entry.slug)
    return dg.MaterializeResult(metadata={
        "location": dg.MetadataValue.path(model_location(entry, lake_obj)),
        "report": dg.MetadataValue.md(markdown_table([row])),
        **{k: v for k, v in row.items() if isinstance(v, int | float) and v is not None},
    })

