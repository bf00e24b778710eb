"""``language_model`` and ``lm_eval`` per model: a toy LM trained on the corpus (or a hub / local model
checked for use, or a model's random-weights control twin written to the lake), and one row on how well it
knows its world; and the ``model_chain`` job."""

from dataclasses import asdict

import dagster as dg

from assets.lakehouse.config import ModelEntry
from assets.lakehouse.fingerprints import record
from assets.lakehouse.lake import Lake
from assets.shared.automation import SETTINGS_CHANGED
from assets.shared.metadata import markdown_table, materialized
from assets.shared.partitions import models_partitions
from assets.shared.resources import GPU_OP_TAGS, LakeResource

GROUP = "models"
MODEL_CHAIN = "model_chain"


def _toy(context: dg.AssetExecutionContext, entry: ModelEntry, lake: Lake, rec: dict) -> dict:
    """A toy LM trained on the corpus, or its control twin: the same config, weights drawn and never trained."""
    from sae_models.toyworld import init_toy_twin, train_toy_lm

    texts = {s: lake.read_split(s).column("text").to_pylist() for s in ("lm_train", "lm_eval")}
    with lake.replace("models", rec, model=entry.slug) as staging:
        if entry.control_of:
            report = init_toy_twin(texts["lm_train"], texts["lm_eval"], entry.toy, entry.control_seed, staging)
        else:
            report = train_toy_lm(texts["lm_train"], texts["lm_eval"], entry.toy, staging, log=context.log.info)
    return {"family": entry.toy.family, "n_layers": entry.toy.layers, "d_model": entry.toy.hidden, **asdict(report)}


def _external_twin(entry: ModelEntry, lake: Lake, rec: dict) -> dict:
    """A hub or local model's control twin, written to the lake: its config and tokenizer, fresh weights."""
    from sae_models.lm.control import save_random_twin
    from sae_models.lm.loading import ModelLoadError

    info = _check_external(entry)
    with lake.replace("models", rec, model=entry.slug) as staging:
        try:
            save_random_twin(entry.source, entry.control_seed, staging, revision=entry.revision, dtype=entry.dtype,
                             trust_remote_code=entry.trust_remote_code)
        except ModelLoadError as exc:
            raise dg.Failure(str(exc)) from None
    return info


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


@dg.multi_asset(
    specs=[dg.AssetSpec("language_model", deps=["corpus"], group_name=GROUP, kinds={"pytorch"},
                        automation_condition=SETTINGS_CHANGED,
                        description="Toy models: trained on the corpus and saved as a Hugging Face directory in "
                                    "lake/models/; hub and local models: resolved (offline) and their layer checked; "
                                    "control twins: the model's config and tokenizer with random weights, in "
                                    "lake/models/."),
           dg.AssetSpec("lm_eval", deps=["language_model"], group_name=GROUP, kinds={"parquet"},
                        automation_condition=SETTINGS_CHANGED,
                        description="One row per model: held-out loss, topic consistency, IOI accuracy (toy world); "
                                    "a control twin names its trained model and its seed.")],
    partitions_def=models_partitions, pool="gpu", op_tags=GPU_OP_TAGS,
)
def language_model_and_lm_eval(context: dg.AssetExecutionContext, lake: LakeResource):
    settings = lake.settings()
    entry = settings.model(context.partition_key)
    lake_obj = lake.lake()
    rec = record("language_model", settings, entry.slug)
    if entry.is_toy:
        info = _toy(context, entry, lake_obj, rec)
    else:
        info = _external_twin(entry, lake_obj, rec) if entry.control_of else _check_external(entry)
    row = {"source": entry.source, "control_of": entry.control_of,
           "init_seed": entry.control_seed if entry.control_of else None, **info}
    table = lake_obj.write_table("lm_eval", [row], rec, model=entry.slug)
    location = lake_obj.uri("models", model=entry.slug) if entry.in_lake else entry.source
    yield materialized(rec, {"location": dg.MetadataValue.path(location)}, "language_model")
    yield materialized(rec, {"report": dg.MetadataValue.md(markdown_table([row])),
                             "path": dg.MetadataValue.path(table),
                             **{k: v for k, v in row.items() if isinstance(v, int | float)}}, "lm_eval")


model_chain_job = dg.define_asset_job(MODEL_CHAIN, selection=["language_model", "lm_eval", "activations"],
                                      partitions_def=models_partitions)
