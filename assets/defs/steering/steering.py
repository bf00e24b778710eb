"""``steering_generations`` per (model, variant): steered and unsteered generations of every concept; and
``steering``, ``steering_concepts``, ``steering_summary``: the judge's ratings, each concept's best factor and
test score, and g per SAE. Generating and rating are separate assets, so changing ``[judge]`` re-rates the
stored generations without generating again."""

import dagster as dg

from assets.defs.interpretability.autointerp import JUDGE_CACHE
from assets.shared.automation import SWEEP_EAGER
from assets.shared.metadata import lines_md, markdown_table, materialized, table_metadata
from assets.shared.partitions import SweepPartition, model_sae_partitions, sweep_partition
from assets.shared.resources import GPU_OP_TAGS, LakeResource, torch_device
from sae_models.arrow import columns
from sae_models.judges import USAGE_COLUMNS

GROUP = "steering"
SUMMARY_METADATA = ("g", "g_ci", "g_unsteered", "g_chosen_on_test", "concept", "instruct", "fluency", *USAGE_COLUMNS)


def _instructions(p: SweepPartition, tokenizer):
    from sae_models.evals.instructions import InstructionError, load_instructions

    cfg = p.settings.steering
    try:
        return load_instructions(cfg.instructions, tokenizer, cfg.chat_template, toy=p.entry.is_toy)
    except InstructionError as exc:
        raise dg.Failure(f"[steering] {exc}") from None


def planned_concepts(p: SweepPartition, sae):
    """The latents g steers, with m_f (judge-independent: from the latent examples)."""
    from sae_models.evals.steering import SteeringInputError, steering_concepts

    examples = p.lake.read_table("latent_examples", model=p.model, sae=p.name)
    try:
        cfg = p.settings.steering
        return steering_concepts(sae, examples, p.settings.autointerp, cfg.n_concepts, cfg.seed)
    except SteeringInputError as exc:
        raise dg.Failure(f"{p.model} / {p.name}: {exc}") from None


def examples_md(generations: list, latent: int) -> dg.MetadataValue:
    """One test instruction of ``latent`` at every factor, the unsteered generation first."""
    rows = [g for g in generations if g.latent == latent and g.split == "test"]
    first = rows[0].instruction_id if rows else None
    shown = sorted((g for g in rows if g.instruction_id == first), key=lambda g: g.factor)
    return dg.MetadataValue.md(markdown_table([{"factor": g.factor, "instruction": g.instruction,
                                                "generation": g.generation} for g in shown]))


@dg.asset(
    partitions_def=model_sae_partitions, deps=["sae", "latent_examples", "language_model"], group_name=GROUP,
    kinds={"parquet"}, pool="gpu", op_tags=GPU_OP_TAGS, automation_condition=SWEEP_EAGER,
)
def steering_generations(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per (latent, factor, instruction): the prompt and the steered (or, at factor 0, unsteered)
    generation. Depends on the LM, the SAE, the concept set and the sampling settings, never on the judge."""
    from sae_models.evals.steering import run_steering_generation
    from sae_models.lm.generate import row_seed

    p = sweep_partition(context, lake)
    cfg = p.settings.steering
    sae = p.load_sae(torch_device())
    concepts = planned_concepts(p, sae)
    lm = p.load_lm()
    result = run_steering_generation(lm, sae, concepts, _instructions(p, lm.tokenizer), p.entry.layer, p.entry.hook,
                                     cfg, lambda *key: row_seed(p.model, p.name, *key, cfg.seed), context.log.info)
    generations, run = result.rows, result.summary
    rec = p.record("steering_generations")
    table = p.lake.write_table("steering_generations", generations, rec, model=p.model, sae=p.name)
    context.log.info(f"{p.name}: {len(generations)} generations, {run.tokens:,} tokens in {run.seconds:.1f}s")
    return materialized(rec, {
        "path": dg.MetadataValue.path(str(table)), "dagster/row_count": len(generations), "concepts": run.concepts,
        "seconds": run.seconds, "generations_per_s": len(generations) / run.seconds,
        "tokens_per_s": run.tokens / run.seconds, "example": examples_md(generations, concepts[0].latent),
    })


def _concept_text(p: SweepPartition) -> dict[int, str]:
    table = p.lake.read_table("autointerp", model=p.model, sae=p.name)
    return dict(zip(table.column("latent").to_pylist(), table.column("explanation").to_pylist(), strict=True))


@dg.multi_asset(
    specs=[dg.AssetSpec("steering", deps=["steering_generations", "autointerp", JUDGE_CACHE], group_name=GROUP,
                        kinds={"parquet"}, automation_condition=SWEEP_EAGER,
                        description="One row per generation: concept, instruct and fluency ratings, and HM."),
           dg.AssetSpec("steering_concepts", deps=["steering"], group_name=GROUP, kinds={"parquet"},
                        automation_condition=SWEEP_EAGER,
                        description="One row per steered concept: alpha* on dev, the test score there, and "
                                    "the unsteered score of the same prompts."),
           dg.AssetSpec("steering_summary", deps=["steering_concepts", "sae_metrics"], group_name=GROUP,
                        kinds={"parquet"}, automation_condition=SWEEP_EAGER,
                        description="One row per SAE: steering utility g beside its unsteered baseline.")],
    partitions_def=model_sae_partitions,
)
def steering_ratings(context: dg.AssetExecutionContext, lake: LakeResource):
    from assets.defs.interpretability.autointerp import build_partition_judge
    from sae_models.evals.steering import GenerationRow, by_factor, from_rows, run_steering_rating
    from sae_models.judges import JudgeError

    p = sweep_partition(context, lake)
    generations = from_rows(p.lake.read_table("steering_generations", model=p.model, sae=p.name), GenerationRow)
    judge = build_partition_judge(p, context.log.info)
    try:
        result = run_steering_rating(generations, _concept_text(p), judge, p.identity())
    except JudgeError as exc:
        raise dg.Failure(f"{p.model} / {p.name}: {exc} ({judge.stored} answers cached; a rerun asks "
                         "only for the rest)") from None
    ratings, scores, summary = result.rows, result.concepts, result.summary
    rec = p.record("steering")
    table = p.lake.write_table("steering", ratings, rec, model=p.model, sae=p.name)
    p.lake.write_table("steering_concepts", scores, rec, model=p.model, sae=p.name)
    p.lake.write_table("steering_summary", [summary], rec, model=p.model, sae=p.name)
    context.log.info(f"{p.name}: g {summary.g} (unsteered {summary.g_unsteered}), judge {judge.stats}")
    curve = by_factor(ratings)
    yield materialized(rec, {"path": dg.MetadataValue.path(str(table)), "dagster/row_count": len(ratings),
                             "by_factor": dg.MetadataValue.md(markdown_table(curve)),
                             "plot": lines_md(curve, "factor", ["hm", "concept", "instruct", "fluency"],
                                              f"{p.name}: mean ratings by factor", "factor (x m_f; 0 = unsteered)")},
                       "steering")
    concept_rows = p.lake.read_table("steering_concepts", model=p.model, sae=p.name)
    yield materialized(rec, table_metadata(concept_rows.select(["latent", "concept", "best_factor", "test_hm",
                                                                "unsteered_test_hm"]), 8), "steering_concepts")
    values = columns(summary)
    yield materialized(rec, {"summary": dg.MetadataValue.md(markdown_table([values])),
                             **{k: float(values[k]) for k in SUMMARY_METADATA if values[k] is not None}},
                       "steering_summary")
