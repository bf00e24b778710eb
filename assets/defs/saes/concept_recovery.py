"""``concept_recovery`` and ``latent_purity`` per (model, variant), toy world only: does some latent fire
exactly on each ground-truth concept, and how pure is each latent? One pass of codes over held-out tokens.
Outside the toy world (no labels) both tables are written empty, without encoding anything."""

import dagster as dg

from assets.defs.world.corpus import document_labels
from assets.lakehouse.registry import model_location
from assets.shared.automation import SWEEP_EAGER
from assets.shared.metadata import markdown_table, materialized
from assets.shared.partitions import model_sae_partitions, sweep_partition
from assets.shared.resources import LakeResource

GROUP = "saes"


@dg.multi_asset(
    specs=[dg.AssetSpec("concept_recovery", deps=["sae", "corpus"], group_name=GROUP, kinds={"parquet"},
                        automation_condition=SWEEP_EAGER,
                        description="Per ground-truth concept: the best latent's F1 of fires vs carries it, "
                                    "with fires = code > 0 and swept over thresholds and signs."),
           dg.AssetSpec("latent_purity", deps=["sae", "corpus"], group_name=GROUP, kinds={"parquet"},
                        automation_condition=SWEEP_EAGER,
                        description="Per latent: share of its activation mass on its best feature (a concept or "
                                    "a word) minus that feature's base rate, on held-out tokens.")],
    partitions_def=model_sae_partitions,
)
def concept_recovery_and_latent_purity(context: dg.AssetExecutionContext, lake: LakeResource):
    from sae_models.evals.autointerp import TokenText
    from sae_models.lm import load_tokenizer
    from sae_models.toyworld.truth import concept_recovery, encode_held_out, purity_of_latents

    p = sweep_partition(context, lake)
    labels = document_labels(p.lake)
    if labels:
        sae_model = p.load_sae()
        _, eval_reader = p.readers()
        held = encode_held_out(sae_model.encode, eval_reader.rows(("doc_id", "pos", "token_id")), labels)
        text = TokenText(load_tokenizer(model_location(p.entry, p.lake), revision=p.entry.revision,
                                        trust_remote_code=p.entry.trust_remote_code))
        recovery, purity = concept_recovery(held), purity_of_latents(held, text)
    else:
        context.log.info("corpus has no ground-truth labels (not the toy world): nothing to recover")
        recovery, purity = [], []
    rec = p.record("concept_recovery")
    p.lake.write_table("concept_recovery", recovery, rec, model=p.model, sae=p.name)
    p.lake.write_table("latent_purity", purity, rec, model=p.model, sae=p.name)
    mean_f1, mean_swept = (float(recovery.column(c).to_numpy().mean()) if labels else 0.0
                           for c in ("best_f1", "best_f1_swept"))
    yield materialized(rec, {"mean_best_f1": mean_f1, "mean_best_f1_swept": mean_swept,
                             "table": dg.MetadataValue.md(markdown_table(recovery.to_pylist() if labels else []))},
                       "concept_recovery")
    yield materialized(rec, {"dagster/row_count": len(purity)}, "latent_purity")
