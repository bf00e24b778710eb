"""The SAE sweep, per (model x SAE variant): ``sae``, ``sae_metrics`` + ``latent_stats``, ``concept_recovery``."""

import shutil
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pyarrow as pa

from assets.activations import activations
from assets.config import ModelEntry, Settings
from assets.corpus import corpus, read_split
from assets.lake import Lake
from assets.metadata import curves_md, markdown_table
from assets.models import model_location
from assets.partitions import model_and_sae, model_sae_partitions
from assets.resources import GPU_OP_TAGS, LakeResource, torch_device
from assets.sweep import Variant, find_variant, sae_config, train_config

SAE_GROUP = "saes"


def _variant(settings: Settings, name: str) -> Variant:
    try:
        return find_variant(settings, name)
    except KeyError as exc:
        raise dg.Failure(str(exc)) from None


def _readers(lake: Lake, model: str, settings: Settings):
    from sae_models.activation_store import ActivationReader, ActivationStoreError

    try:
        return ActivationReader(lake.path("activations", model=model)).split(settings.sweep.holdout_fraction)
    except ActivationStoreError as exc:
        raise dg.Failure(f"activations of {model}: {exc}") from None


def _sample(reader, tokens: int, seed: int):
    import torch

    rows, total = [], 0
    for batch in reader.batches(min(4096, tokens), seed=seed):
        rows.append(batch)
        total += len(batch)
        if total >= tokens:
            break
    return torch.cat(rows)[:tokens]


def _build(variant: Variant, d_model: int, settings: Settings, metadata: dict):
    import torch

    from sae_models.sae import SAEConfigError, build_sae

    try:
        torch.manual_seed(settings.sweep.train.seed)
        return build_sae(sae_config(variant, d_model, settings.sweep, metadata))
    except SAEConfigError as exc:
        raise dg.Failure(f"SAE variant {variant.name} (d_model {d_model}): {exc}") from None


# Each step of the sweep runs by itself once its inputs land (a new model's activations, a new variant).
EAGER = dg.AutomationCondition.eager()


@dataclass(frozen=True)
class SweepPartition:
    """One (model, SAE variant) partition with what every sweep asset reads about it."""

    model: str
    name: str
    settings: Settings
    lake: Lake
    entry: ModelEntry
    variant: Variant


def sweep_partition(context, lake: LakeResource) -> SweepPartition | None:
    """The partition, or None for an external SAE registered for another model (those stay empty)."""
    model, name = model_and_sae(context)
    settings = lake.settings()
    variant = _variant(settings, name)
    if variant.model not in (None, model):
        context.log.info(f"{name} is an external SAE of {variant.model}, not of {model}: nothing to do")
        return None
    return SweepPartition(model, name, settings, lake.lake(), settings.model(model), variant)


def _import_external(variant: Variant, d_model: int):
    from sae_models.sae import SAECheckpointError, load_sae

    try:
        sae_model = load_sae(variant.path)
    except SAECheckpointError as exc:
        raise dg.Failure(f"external SAE {variant.name}: {exc}") from None
    if sae_model.cfg.d_in != d_model:
        raise dg.Failure(f"external SAE {variant.name}: d_in {sae_model.cfg.d_in} does not match the "
                         f"activations of {variant.model} (d_model {d_model})")
    return sae_model


def _train(context, sae_model, variant: Variant, train_reader, settings: Settings, lake: Lake, model: str):
    """Fit a baseline or train an SAE (resuming from lake/_checkpoints); returns the logged history."""
    from sae_models.sae.train import TrainingError, train_sae

    if variant.is_baseline:
        sae_model.fit(_sample(train_reader, settings.sweep.baseline_fit_tokens, settings.sweep.train.seed))
        return []
    ckpt = lake.root / "_checkpoints" / f"model={model}" / f"sae={variant.name}"
    try:
        result = train_sae(sae_model, train_reader, train_config(settings.sweep, torch_device()), ckpt,
                           log=context.log.info)
    except TrainingError as exc:
        raise dg.Failure(f"{model} / {variant.name}: {exc}") from None
    shutil.rmtree(ckpt, ignore_errors=True)
    return result.history


@dg.asset(
    partitions_def=model_sae_partitions, deps=[activations], group_name=SAE_GROUP, kinds={"pytorch"},
    pool="gpu", op_tags=GPU_OP_TAGS, automation_condition=EAGER, output_required=False,
)
def sae(context: dg.AssetExecutionContext, lake: LakeResource):
    """A trained SAE, fitted baseline or imported external SAE, saved in the SAELens layout at
    lake/saes/model=/sae=/. An external SAE registered for another model is not materialized here."""
    from sae_models.lm.hooks import sae_lens_hook_name
    from sae_models.sae import save_sae

    if (p := sweep_partition(context, lake)) is None:
        return
    model, name, settings, lake_obj, entry, variant = p.model, p.name, p.settings, p.lake, p.entry, p.variant
    train_reader, _ = _readers(lake_obj, model, settings)
    if variant.is_external:
        sae_model, history = _import_external(variant, train_reader.d_model), []
    else:
        meta = {"model_name": entry.source, "hook_name": sae_lens_hook_name(entry.layer, entry.hook),
                "hook_layer": entry.layer, "sae_lake_variant": name}
        sae_model = _build(variant, train_reader.d_model, settings, meta)
        history = _train(context, sae_model, variant, train_reader, settings, lake_obj, model)
    with lake_obj.replace("saes", model=model, sae=name) as staging:
        save_sae(sae_model.cpu(), staging)
    metadata = {"architecture": sae_model.cfg.architecture, "d_sae": sae_model.cfg.d_sae}
    if history:
        lake_obj.write_table("sae_training", pa.Table.from_pylist(history), model=model, sae=name)
        metadata["curves"] = curves_md(history, ["loss", "l0"], name)
    yield dg.MaterializeResult(metadata=metadata)


SAE_METRICS = "sae_metrics"
LATENT_STATS = "latent_stats"


def _held_out_docs(eval_reader, lake: Lake, n_docs: int) -> list[str]:
    docs = read_split(lake, "activation")
    held = set()
    for keys, _ in eval_reader.rows(("doc_id",)):
        held.update(np.unique(keys["doc_id"]).tolist())
    ids, texts = docs.column("doc_id").to_pylist(), docs.column("text").to_pylist()
    return [t for d, t in zip(ids, texts, strict=True) if d in held][:n_docs]


@dg.multi_asset(
    specs=[dg.AssetSpec(SAE_METRICS, deps=[sae], group_name=SAE_GROUP, kinds={"parquet"}, automation_condition=EAGER,
                        skippable=True, description="One row per SAE: SAEBench core metrics on held-out tokens."),
           dg.AssetSpec(LATENT_STATS, deps=[sae], group_name=SAE_GROUP, kinds={"parquet"}, automation_condition=EAGER,
                        skippable=True, description="One row per latent: firing frequency, max and mean activation.")],
    partitions_def=model_sae_partitions, pool="gpu", op_tags=GPU_OP_TAGS,
)
def sae_evaluation(context: dg.AssetExecutionContext, lake: LakeResource):
    from dataclasses import asdict

    from sae_models.lm import load_lm
    from sae_models.sae import load_sae
    from sae_models.sae.metrics import downstream_metrics, reconstruction_metrics

    if (p := sweep_partition(context, lake)) is None:
        return
    model, name, settings, lake_obj, entry, variant = p.model, p.name, p.settings, p.lake, p.entry, p.variant
    _, eval_reader = _readers(lake_obj, model, settings)
    sae_model = load_sae(lake_obj.path("saes", model=model, sae=name))
    recon, stats = reconstruction_metrics(sae_model, (acts for _, acts in eval_reader.rows(())))
    lm = load_lm(model_location(entry, lake_obj), revision=entry.revision, dtype=entry.dtype,
                 device=torch_device(), trust_remote_code=entry.trust_remote_code)
    texts = _held_out_docs(eval_reader, lake_obj, settings.sweep.metric_docs)
    down = downstream_metrics(sae_model.to(lm.device), lm, texts, entry.layer, entry.hook,
                              context=settings.extraction.context)
    row = {"architecture": variant.architecture, "level": variant.level, "target_l0": variant.target_l0,
           "d_sae": sae_model.cfg.d_sae, **asdict(recon), **asdict(down),
           "dead_fraction": 1 - recon.frac_alive}
    lake_obj.write_table(SAE_METRICS, pa.Table.from_pylist([row]), model=model, sae=name)
    latents = pa.table({"latent": np.arange(sae_model.cfg.d_sae, dtype=np.int32),
                        "firing_frequency": stats.firing_frequency, "max_activation": stats.max_activation,
                        "mean_activation": stats.mean_activation})
    lake_obj.write_table(LATENT_STATS, latents, model=model, sae=name)
    yield dg.MaterializeResult(asset_key=SAE_METRICS, metadata={
        "metrics": dg.MetadataValue.md(markdown_table([row])),
        **{k: float(row[k]) for k in ("l0", "explained_variance", "ce_loss_score", "kl_div_score", "dead_fraction")},
    })
    yield dg.MaterializeResult(asset_key=LATENT_STATS, metadata={"dagster/row_count": latents.num_rows})


@dg.asset(
    partitions_def=model_sae_partitions, deps=[sae, corpus], group_name=SAE_GROUP, kinds={"parquet"},
    automation_condition=EAGER, output_required=False,
)
def concept_recovery(context: dg.AssetExecutionContext, lake: LakeResource):
    """Toy world truth: per ground-truth concept, the best latent's F1 of "fires" vs "token carries it"."""
    from sae_models.sae import load_sae
    from sae_models.toyworld.truth import concept_f1

    if (p := sweep_partition(context, lake)) is None:
        return
    sae_model = load_sae(p.lake.path("saes", model=p.model, sae=p.name))
    codes, _, truth, names = codes_vs_truth(p, sae_model)
    if not truth.any():
        context.log.info("corpus has no ground-truth labels (not the toy world): nothing to recover")
    f1, latent = concept_f1(codes > 0, truth)
    table = pa.table({"concept": names, "kind": [c.split(":")[0] for c in names], "best_f1": f1,
                      "best_latent": latent.astype(np.int32)})
    p.lake.write_table("concept_recovery", table, model=p.model, sae=p.name)
    yield dg.MaterializeResult(metadata={"mean_best_f1": float(f1.mean()),
                                         "table": dg.MetadataValue.md(markdown_table(table.to_pylist()))})


def codes_vs_truth(p: SweepPartition, sae_model):
    """On held-out tokens: the SAE codes [tokens, d_sae], the token ids, and which ground-truth concepts each
    token carries [tokens, concepts] (all False outside the toy world), with the concept names."""
    import torch

    from sae_models.toyworld import concepts
    from sae_models.toyworld.truth import token_labels

    docs = read_split(p.lake, "activation")
    labels = dict(zip(docs.column("doc_id").to_pylist(), docs.column("labels").to_pylist(), strict=True))
    _, eval_reader = _readers(p.lake, p.model, p.settings)
    names = concepts()
    codes, tokens, truth = [], [], []
    with torch.no_grad():
        for keys, acts in eval_reader.rows(("doc_id", "pos", "token_id")):
            codes.append(sae_model.encode(acts))
            tokens.append(torch.from_numpy(keys["token_id"].astype(np.int64)))
            truth.append(token_labels(keys["doc_id"], keys["pos"], labels, names))
    return torch.cat(codes), torch.cat(tokens), torch.cat(truth), names


# --- checks -------------------------------------------------------------------------------------------


def _metrics_row(lake: LakeResource, context) -> dict:
    model, name = model_and_sae(context)
    return lake.lake().read_table(SAE_METRICS, model=model, sae=name).to_pylist()[0]


@dg.asset_check(asset=SAE_METRICS, partitions_def=model_sae_partitions, blocking=True)
def sae_metrics_finite(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """Every metric is a finite number; the dead-latent fraction is reported."""
    row = _metrics_row(lake, context)
    bad = [k for k, v in row.items() if isinstance(v, float) and not np.isfinite(v)]
    return dg.AssetCheckResult(passed=not bad, metadata={"non_finite": str(bad),
                                                         "dead_fraction": float(row["dead_fraction"])})


@dg.asset_check(asset=SAE_METRICS, partitions_def=model_sae_partitions, blocking=True)
def sae_l0_near_target(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """Held-out L0 against the target: TopK exact (k), BatchTopK and JumpReLU within a factor of 2.
    Architectures without a target (L1-penalised, baselines) pass and report their L0."""
    row = _metrics_row(lake, context)
    target, l0 = row["target_l0"], row["l0"]
    if target is None:
        ok = True
    elif row["architecture"] == "topk":
        ok = abs(l0 - target) < 1e-6 * target + 0.01
    else:
        ok = target / 2 <= l0 <= 2 * target
    return dg.AssetCheckResult(passed=ok, metadata={"l0": float(l0), "target_l0": target or 0.0})


@dg.asset_check(asset=SAE_METRICS, partitions_def=model_sae_partitions, blocking=True)
def sae_explained_variance(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """Explained variance on held-out tokens is above lake.toml's floor."""
    row = _metrics_row(lake, context)
    floor = lake.settings().sweep.min_explained_variance
    return dg.AssetCheckResult(passed=row["explained_variance"] >= floor,
                               metadata={"explained_variance": float(row["explained_variance"]), "floor": floor})

