"""``true_steerability`` per (model, variant), toy world only: each steered latent's judge-free steering effect
(``sae_models.toyworld.steerability``), on the latents g steers, at g's factors, for the latent's best
ground-truth feature (an oracle's latent: the concept it was built for). Outside the toy world (no
labels) the table is written empty."""

import dagster as dg

from assets.defs.steering.steering import GROUP, planned_concepts
from assets.shared.automation import SWEEP_EAGER
from assets.shared.metadata import materialized, table_metadata
from assets.shared.partitions import model_sae_partitions, sweep_partition
from assets.shared.resources import GPU_OP_TAGS, LakeResource, torch_device

N_DOCUMENTS = 32  # held-out instruction documents: 16 dev, 16 test


def _concepts_of(p, sae) -> dict[int, str]:
    """Each latent's concept: an oracle's latent the one it was built for (its corrupted copies keep the name, so
    a random direction is scored on the concept it replaced); any other latent its best ground-truth feature."""
    built_for = sae.cfg.metadata.get("concepts") if p.variant.is_oracle else None
    if built_for:
        return dict(enumerate(built_for))
    purity = p.lake.read_table("latent_purity", model=p.model, sae=p.name).to_pylist()
    return {r["latent"]: r["purity_feature"] for r in purity}


@dg.asset(partitions_def=model_sae_partitions, deps=["sae", "latent_examples", "latent_purity", "language_model"],
          group_name=GROUP, kinds={"parquet"}, pool="gpu", op_tags=GPU_OP_TAGS, automation_condition=SWEEP_EAGER)
def true_steerability(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Per steered latent: the rise of the LM's next-token probability on the words the grammar labels with the
    latent's best ground-truth concept, at the factor chosen on dev documents among those that keep the
    instruction's topic words at half their probability or more, measured on test documents; teacher-forced on
    held-out instruction documents."""
    from assets.lakehouse.tables import spec
    from sae_models.toyworld import steerability

    p = sweep_partition(context, lake)
    rec = p.record("true_steerability")
    if not p.settings.has_labels:
        context.log.info("corpus has no ground-truth labels (not the toy world): no true steerability")
        p.lake.write_table("true_steerability", [], rec, model=p.model, sae=p.name)
        return materialized(rec, {"dagster/row_count": 0})
    sae = p.load_sae(torch_device())
    concept = _concepts_of(p, sae)
    latents = [steerability.SteeredLatent(c.latent, c.magnitude, concept[c.latent]) for c in planned_concepts(p, sae)]
    lm = p.load_lm()
    try:
        docs = steerability.probe_documents(p.lake.read_split("lm_eval").to_pylist(), N_DOCUMENTS)
    except ValueError as exc:
        raise dg.Failure(f"{p.model} / {p.name}: {exc} (corpus lm_eval_docs)") from None
    probe = steerability.SteerabilityProbe(lm, docs, p.entry.layer, p.entry.hook)
    directions = sae.decoder_directions().detach().to(lm.device)
    rows = steerability.true_steerability(probe, directions, latents, p.settings.steering.factors)
    p.lake.write_table("true_steerability", rows, rec, model=p.model, sae=p.name)
    table = spec("true_steerability").conform(rows)
    measured = [r.rise_test for r in rows if r.rise_test is not None]
    mean = sum(measured) / len(measured) if measured else 0.0
    context.log.info(f"{p.name}: true steerability {mean:.4f} over {len(rows)} latents")
    return materialized(rec, {"true_steerability": mean, **table_metadata(table, 8)})
