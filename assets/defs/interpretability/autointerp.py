"""``autointerp`` and ``interpretability`` per (model, variant): explanations, SAEBench detection and [C23]
simulation scores per scored latent, and mu per SAE; and ``judge_cache``, every judge call, which the judge
reads and extends as it goes."""

import dagster as dg

from assets.defs.interpretability.latent_examples import live_latents
from assets.lakehouse.registry import model_location
from assets.shared.automation import SWEEP_EAGER
from assets.shared.metadata import markdown_table, materialized, table_metadata
from assets.shared.partitions import SweepPartition, model_sae_partitions, sweep_partition
from assets.shared.resources import LakeResource, torch_device
from sae_models.arrow import columns
from sae_models.judges import USAGE_COLUMNS

GROUP = "interpretability"
JUDGE_CACHE = "judge_cache"
SUMMARY_METADATA = ("mu", "mu_simulation", "purity_spearman", "n_too_few", *USAGE_COLUMNS)

judge_cache = dg.AssetSpec(
    JUDGE_CACHE, group_name=GROUP, kinds={"parquet"},
    description="Every judge call, keyed by a content hash of (backend, model, task, messages): a rerun answers "
                "from it with zero new calls. Appended by the judge during autointerp (and later evaluations).")


def tokenizer_text(p: SweepPartition):
    from sae_models.evals.autointerp import TokenText
    from sae_models.lm import ModelLoadError, load_tokenizer

    try:
        return TokenText(load_tokenizer(model_location(p.entry, p.lake), revision=p.entry.revision,
                                        trust_remote_code=p.entry.trust_remote_code))
    except (ModelLoadError, OSError) as exc:
        raise dg.Failure(f"tokenizer of {p.model}: {exc}") from None


def build_partition_judge(p: SweepPartition, log):
    """The configured judge over the lake's call cache; a backend that cannot start is one failure line."""
    from sae_models.judges import JudgeError, build_judge

    try:
        root, fs = p.lake.judge_cache_location(JUDGE_CACHE)
        return build_judge(p.settings.judge, root, device=torch_device(), progress=log, cache_fs=fs)
    except JudgeError as exc:
        raise dg.Failure(str(exc)) from None


def _purity(p: SweepPartition) -> dict[int, tuple[float, str]]:
    table = p.lake.read_table("latent_purity", model=p.model, sae=p.name)
    return {lat: (pu, f) for lat, pu, f in zip(*(table.column(c).to_pylist() for c in table.column_names),
                                               strict=True)}


@dg.multi_asset(
    specs=[dg.AssetSpec("autointerp", deps=["latent_examples", "latent_purity", JUDGE_CACHE], group_name=GROUP,
                        kinds={"parquet"}, automation_condition=SWEEP_EAGER,
                        description="One row per scored latent: explanations, detection and simulation scores."),
           dg.AssetSpec("interpretability", deps=["autointerp", "sae_metrics"], group_name=GROUP,
                        kinds={"parquet"}, automation_condition=SWEEP_EAGER,
                        description="One row per SAE: mu (mean detection score over CONCEPT100) and judge usage.")],
    partitions_def=model_sae_partitions,
)
def autointerp_and_interpretability(context: dg.AssetExecutionContext, lake: LakeResource):
    from sae_models.evals.autointerp import run_autointerp
    from sae_models.evals.examples import from_arrow
    from sae_models.judges import JudgeError

    p = sweep_partition(context, lake)
    cfg = p.settings.autointerp
    examples = from_arrow(p.lake.read_table("latent_examples", model=p.model, sae=p.name), cfg)
    text, judge = tokenizer_text(p), build_partition_judge(p, context.log.info)
    n_sampled = min(cfg.n_latents, len(live_latents(p.lake, p.model, p.name)))
    try:
        result = run_autointerp(examples, text, judge, cfg, _purity(p), n_sampled, p.identity())
    except JudgeError as exc:
        raise dg.Failure(f"{p.model} / {p.name}: {exc} ({judge.stored} answers cached; a rerun asks "
                         "only for the rest)") from None
    rows, summary = result.rows, result.summary
    rec = p.record("autointerp")
    table = p.lake.write_table("autointerp", rows, rec, model=p.model, sae=p.name)
    p.lake.write_table("interpretability", [summary], rec, model=p.model, sae=p.name)
    context.log.info(f"{p.name}: mu {summary.mu}, judge {judge.stats}")
    scores = p.lake.read_table("autointerp", model=p.model, sae=p.name)
    yield materialized(rec, {
        "path": dg.MetadataValue.path(str(table)),
        **table_metadata(scores.select(["latent", "explanation", "detection_score", "simulation_score"]), 8)},
        "autointerp")
    values = columns(summary)
    yield materialized(rec, {"summary": dg.MetadataValue.md(markdown_table([values])),
                             **{k: float(values[k]) for k in SUMMARY_METADATA if values[k] is not None}},
                       "interpretability")
