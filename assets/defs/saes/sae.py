"""``sae`` and ``sae_training`` per (model, variant): a trained SAE, fitted baseline, oracle dictionary or
imported external SAE in the SAELens layout at lake/saes/model=/sae=/, with its training curve; and the
``sae_sweep`` job."""

import json

import dagster as dg

from assets.defs.world.corpus import document_labels
from assets.lakehouse.registry import variants_for
from assets.shared.automation import SWEEP_EAGER
from assets.shared.metadata import curves_md, materialized
from assets.shared.partitions import SweepPartition, model_sae_partitions, sweep_partition
from assets.shared.resources import GPU_OP_TAGS, LakeResource, torch_device

GROUP = "saes"
SAE_SWEEP = "sae_sweep"
CHECKPOINTS = "_checkpoints"
STREAMED = "_streamed"  # SAEs a model's streamed pass trained for partitions of it that have not run yet
HISTORY = "history.json"
FAILED = "failed.txt"  # in place of a streamed SAE whose training failed: why


def _metadata(p: SweepPartition) -> dict:
    from sae_models.lm.hooks import sae_lens_hook_name

    meta = {"model_name": p.entry.source, "hook_name": sae_lens_hook_name(p.entry.layer, p.entry.hook),
            "hook_layer": p.entry.layer, "sae_lake_variant": p.name}
    if p.entry.control_of:  # a twin's SAE must not pass for one of the trained model
        meta |= {"model_name": p.model, "sae_lake_control_of": p.entry.control_of}
    return meta


def _build(p: SweepPartition, d_model: int):
    import torch

    from sae_models.sae import SAEConfigError, build_sae
    from sae_models.sae.sweep import sae_config

    try:
        torch.manual_seed(p.settings.sweep.train.seed)
        return build_sae(sae_config(p.variant, d_model, p.settings.sweep, _metadata(p)))
    except SAEConfigError as exc:
        raise dg.Failure(f"SAE variant {p.name} (d_model {d_model}): {exc}") from None


def _import_external(p: SweepPartition, d_model: int):
    from sae_models.sae import SAECheckpointError, load_sae
    from sae_models.sae.formats import trained_layer

    try:
        sae_model = load_sae(p.variant.path, p.variant.norm_scaling_factor)
    except SAECheckpointError as exc:
        raise dg.Failure(f"external SAE {p.name}: {exc}") from None
    if sae_model.cfg.d_in != d_model:
        raise dg.Failure(f"external SAE {p.name}: d_in {sae_model.cfg.d_in} does not match the "
                         f"activations of {p.model} (d_model {d_model})")
    layer = trained_layer(sae_model.cfg.metadata)
    if layer is not None and layer != p.entry.layer:
        raise dg.Failure(f"external SAE {p.name}: its folder says it was trained at layer {layer}, but {p.model} is "
                         f"read at layer {p.entry.layer} (lake.toml [[models]] layer): evaluated there it would "
                         "measure another site")
    return sae_model


def _fit_oracle(p: SweepPartition, train_reader):
    """An oracle dictionary from the labelled training activations (``[oracle]``); a corpus without labels is
    one line naming the model and ``[oracle]``."""
    from sae_models.sae.oracle import OracleLabelError, fit_oracle
    from sae_models.toyworld.truth import labelled_sample

    labels = document_labels(p.lake)
    if not labels:
        raise dg.Failure(p.settings.oracle_notice() or f"[oracle]: {p.model}'s corpus has no labels")
    sweep = p.settings.sweep
    # each seed its own fitting sample: the clean copies are replicates, not one dictionary three times
    x, y, names = labelled_sample(train_reader.rows(), labels, sweep.baseline_fit_tokens,
                                  sweep.train.seed + 1000 * p.variant.seed)
    try:
        return fit_oracle(x, y, names, p.variant.corruption, p.variant.seed, _metadata(p))
    except OracleLabelError as exc:
        raise dg.Failure(f"{p.model} / {p.name}: {exc}") from None


def _train(context, p: SweepPartition, sae_model, train_reader) -> list[dict]:
    """Fit a baseline or train an SAE from the cached activations (resuming from the lake's _checkpoints, which
    an object-store lake holds too, so another machine can resume); returns the logged history."""
    from sae_models.sae.train import TrainingError, train_sae

    sweep = p.settings.sweep
    if p.variant.is_baseline:
        sae_model.fit(train_reader.sample(sweep.baseline_fit_tokens, sweep.train.seed))
        return []
    where = {"model": p.model, "sae": p.name}
    ckpt = p.lake.fetch(CHECKPOINTS, **where)
    try:
        result = train_sae(sae_model, train_reader, sweep.train, ckpt, log=context.log.info, device=torch_device(),
                           on_checkpoint=lambda: p.lake.push(CHECKPOINTS, **where))
    except TrainingError as exc:
        raise dg.Failure(f"{p.model} / {p.name}: {exc}") from None
    p.lake.remove(CHECKPOINTS, **where)
    return result.history


def _is_trained(variant) -> bool:
    return not (variant.is_baseline or variant.is_external or variant.is_oracle)


def _sibling(p: SweepPartition, variant) -> SweepPartition:
    return SweepPartition(p.model, variant.name, p.settings, p.lake, p.entry, variant)


def _waiting(p: SweepPartition) -> bool:
    """Whether a streamed pass already trained this partition's SAE, at its current settings."""
    stored = p.lake.read_record(STREAMED, model=p.model, sae=p.name)
    return bool(stored) and stored["fingerprint"] == p.record("sae")["fingerprint"]


def _stale(p: SweepPartition) -> bool:
    from assets.lakehouse.fingerprints import recorded_fingerprint

    current = recorded_fingerprint(p.lake, "sae", p.model, p.name) == p.record("sae")["fingerprint"]
    return not current and not _waiting(p)


def _stream(p: SweepPartition):
    """The model's training documents (the held-out ones left out) run through the LM as training consumes
    their activations."""
    from sae_models.activation_store import held_out_documents
    from sae_models.activation_stream import ActivationStream
    from sae_models.lm import activation_extractor

    docs = p.lake.read_split("activation")
    ids = docs.column("doc_id").to_numpy()
    train = ~held_out_documents(ids, p.settings.sweep.holdout_fraction)
    pairs = [(int(i), text) for i, text, keep in zip(ids, docs.column("text").to_pylist(), train, strict=True) if keep]
    extract = activation_extractor(p.load_lm(), p.settings.extraction, layer=p.entry.layer, site=p.entry.hook)
    stream = p.settings.sweep.stream
    return ActivationStream(extract, pairs, stream.buffer_tokens, stream.docs_per_forward, p.settings.sweep.train.seed)


def _pass_group(p: SweepPartition) -> list[SweepPartition]:
    """This partition and the model's other trained variants whose SAE is neither current nor waiting, up to
    ``[sweep.stream] max_saes_per_pass``."""
    siblings = [_sibling(p, v) for v in variants_for(p.settings, p.model) if _is_trained(v) and v.name != p.name]
    group = [p] + [q for q in siblings if _stale(q)]
    return group[:p.settings.sweep.stream.max_saes_per_pass or len(group)]


def _run_pass(context, p: SweepPartition, train_reader) -> None:
    """One LM pass training the group's SAEs; each finished SAE, or the reason it failed, waits in _streamed."""
    from sae_models.activation_stream import ActivationStreamError
    from sae_models.sae import save_sae
    from sae_models.sae.train import Trainer, train_saes

    group = _pass_group(p)
    context.log.info(f"{p.model}: one streamed pass trains {len(group)} SAEs: {[q.name for q in group]}")
    trainers = [Trainer(_build(q, train_reader.d_model), p.settings.sweep.train,
                        p.lake.fetch(CHECKPOINTS, model=q.model, sae=q.name),
                        log=context.log.info, device=torch_device(),
                        on_checkpoint=lambda q=q: p.lake.push(CHECKPOINTS, model=q.model, sae=q.name))
                for q in group]
    stream = _stream(p)
    try:
        results = train_saes(trainers, stream, p.settings.sweep.train, train_reader)
    except ActivationStreamError as exc:
        raise dg.Failure(f"{p.model}: the activation stream: {exc}") from None
    position = max(t.position or 0 for t in trainers)
    context.log.info(f"{p.model}: the pass read {position:,} documents, {stream.passes(position):.2f} passes over "
                     f"the {len(stream.documents):,} training documents")
    for q, trainer, result in zip(group, trainers, results, strict=True):
        with p.lake.replace(STREAMED, q.record("sae"), model=q.model, sae=q.name) as staging:
            if result.error:
                (staging / FAILED).write_text(result.error)
            else:
                save_sae(trainer.sae.cpu(), staging)
                (staging / HISTORY).write_text(json.dumps(result.history))
        p.lake.remove(CHECKPOINTS, model=q.model, sae=q.name)


def _train_streamed(context, p: SweepPartition, train_reader) -> tuple:
    """(SAE, history) of a trained variant under ``[sweep] source = "stream"``: unless a pass already trained it,
    one LM pass trains it with the model's other trained variants whose SAE is not current; their SAEs wait in
    the lake's _streamed folder until their own partitions take them."""
    from filelock import FileLock

    from sae_models.sae import load_sae

    lock = p.lake.path(STREAMED, model=p.model)
    lock.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock / ".lock")):  # a second run of this model waits, then finds its SAE waiting
        if not _waiting(p):
            _run_pass(context, p, train_reader)
        waiting = p.lake.fetch(STREAMED, model=p.model, sae=p.name)
        if (waiting / FAILED).is_file():
            why = (waiting / FAILED).read_text()
            p.lake.remove(STREAMED, model=p.model, sae=p.name)  # a rerun tries again
            raise dg.Failure(f"{p.model} / {p.name}: {why}")
        return load_sae(waiting), json.loads((waiting / HISTORY).read_text())


@dg.multi_asset(
    specs=[dg.AssetSpec("sae", deps=["activations"], group_name=GROUP, kinds={"pytorch"},
                        automation_condition=SWEEP_EAGER,
                        description="A trained SAE, fitted baseline or imported external SAE, in the SAELens "
                                    "layout at lake/saes/model=/sae=/."),
           dg.AssetSpec("sae_training", deps=["sae"], group_name=GROUP, kinds={"parquet"},
                        automation_condition=SWEEP_EAGER,
                        description="One row per logged training step (no rows for a fitted baseline or an "
                                    "imported external SAE: they have no training curve).")],
    partitions_def=model_sae_partitions, pool="gpu", op_tags=GPU_OP_TAGS,
)
def sae_and_sae_training(context: dg.AssetExecutionContext, lake: LakeResource):
    from sae_models.sae import save_sae

    p = sweep_partition(context, lake)
    train_reader, _ = p.readers()
    if p.variant.is_external:
        sae_model, history = _import_external(p, train_reader.d_model), []
    elif p.variant.is_oracle:
        sae_model, history = _fit_oracle(p, train_reader), []
    elif _is_trained(p.variant) and p.settings.sweep.source == "stream":
        sae_model, history = _train_streamed(context, p, train_reader)
    else:
        sae_model = _build(p, train_reader.d_model)
        history = _train(context, p, sae_model, train_reader)
    rec = p.record("sae")
    with p.lake.replace("saes", rec, model=p.model, sae=p.name) as staging:
        save_sae(sae_model.cpu(), staging)
    p.lake.remove(STREAMED, model=p.model, sae=p.name)
    yield materialized(rec, {"architecture": sae_model.cfg.architecture, "d_sae": sae_model.cfg.d_sae}, "sae")
    p.lake.write_table("sae_training", history, rec, model=p.model, sae=p.name)
    curves = {"curves": curves_md(history, ["loss", "l0"], p.name)} if history else {}
    yield materialized(rec, {"dagster/row_count": len(history), **curves}, "sae_training")


# One run per (model, variant): the SAE, its evaluation, its interpretability, its steering utility, its
# feature selection, its feature dashboard and, for the variants [patching] names, its IOI patching frontier.
sae_sweep_job = dg.define_asset_job(
    SAE_SWEEP, selection=dg.AssetSelection.groups("saes", "interpretability", "steering", "selection", "patching",
                                                   "dashboards")
    - dg.AssetSelection.assets("interpretability_by_kind", "judge_cache", "patching_report", "dashboards_index"),
    partitions_def=model_sae_partitions,
)
