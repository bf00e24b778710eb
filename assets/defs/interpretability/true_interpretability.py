"""``true_interpretability`` per (model, variant), toy world only: for each scored latent, the best balanced
detection accuracy an exact one-feature explanation reaches on the windows the judge scored
(``sae_models.toyworld.interpretability``). It reads the windows and the grammar's labels, never the judge:
it runs without one, and a change of judge does not rerun it. Outside the toy world the table is written empty."""

import dagster as dg

from assets.defs.interpretability.autointerp import GROUP, tokenizer_text
from assets.defs.world.corpus import document_labels
from assets.shared.automation import SWEEP_EAGER
from assets.shared.metadata import materialized, table_metadata
from assets.shared.partitions import model_sae_partitions, sweep_partition
from assets.shared.resources import LakeResource


@dg.asset(partitions_def=model_sae_partitions, deps=["latent_examples", "corpus"], group_name=GROUP,
          kinds={"parquet"}, automation_condition=SWEEP_EAGER)
def true_interpretability(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Per scored latent: the feature of the world's vocabulary (concepts, words, words in a context) whose tokens
    best coincide with its firing tokens on the judge's explanation windows, the balanced accuracy of "the window
    carries it" on the judge's detection windows, the best any feature reaches there (optimistic), and the
    CONCEPT100 flag."""
    from assets.lakehouse.tables import spec
    from sae_models.evals.examples import from_arrow
    from sae_models.toyworld.interpretability import true_interpretability as score

    p = sweep_partition(context, lake)
    rec = p.record("true_interpretability")
    labels = document_labels(p.lake)
    if not labels:
        context.log.info("corpus has no ground-truth labels (not the toy world): no true interpretability")
        p.lake.write_table("true_interpretability", [], rec, model=p.model, sae=p.name)
        return materialized(rec, {"dagster/row_count": 0})
    cfg = p.settings.autointerp
    examples = from_arrow(p.lake.read_table("latent_examples", model=p.model, sae=p.name), cfg)
    text = tokenizer_text(p)
    rows = score(examples, cfg, labels, lambda token: text([token])[0].strip())
    p.lake.write_table("true_interpretability", rows, rec, model=p.model, sae=p.name)
    scored = [r.true_interpretability for r in rows if r.concept100 and r.true_interpretability is not None]
    mean = sum(scored) / max(1, len(scored))
    context.log.info(f"{p.name}: true interpretability {mean:.3f} over {len(scored)} CONCEPT100 latents")
    return materialized(rec, {"true_interpretability": mean,
                              **table_metadata(spec("true_interpretability").conform(rows), 8)})
