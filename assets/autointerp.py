"""Interpretability per (model x SAE variant): ``latent_examples``, then ``autointerp`` + ``interpretability``.

The science lives in ``sae_models.evals`` and ``sae_models.judges``; here are the lake reads and writes, the
judge built from lake.toml, and the checks.
"""

import resource
import sys
import time
from collections.abc import Iterator

import dagster as dg
import numpy as np
import pyarrow as pa

from assets.corpus import corpus
from assets.lake import Lake
from assets.metadata import markdown_table, table_metadata
from assets.models import model_location
from assets.partitions import model_and_sae, model_sae_partitions
from assets.resources import GPU_OP_TAGS, LakeResource, torch_device
from assets.saes import EAGER, LATENT_STATS, codes_vs_truth, sae, sweep_partition

GROUP = "interpretability"
LATENT_EXAMPLES = "latent_examples"
AUTOINTERP = "autointerp"
INTERPRETABILITY = "interpretability"
JUDGE_CACHE = "judge_cache"
LOG_EVERY_S = 10.0


def example_config(settings):
    from sae_models.evals.examples import ExampleConfig

    a = settings.autointerp
    return ExampleConfig(n_top=a.n_top, n_importance=a.n_importance, n_random=a.n_random,
                         half_window=a.half_window, seed=a.seed)


def autointerp_config(settings):
    from sae_models.evals.autointerp import AutointerpConfig

    a = settings.autointerp
    return AutointerpConfig(n_latents=a.n_latents, n_concept=a.n_concept, explain_top=a.explain_top,
                            explain_importance=a.explain_importance, score_top=a.score_top,
                            score_importance=a.score_importance, score_random=a.score_random,
                            threshold=a.threshold, random_negative=a.random_negative, sim_explain_top=a.sim_explain_top,
                            sim_top=a.sim_top, sim_random=a.sim_random, seed=a.seed)


def _live_latents(lake: Lake, model: str, name: str) -> np.ndarray:
    stats = lake.read_table(LATENT_STATS, model=model, sae=name)
    return stats.column("latent").to_numpy()[stats.column("firing_frequency").to_numpy() > 0]


def scored_latents(live: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A fixed random sample of ``n`` live latents (all of them when fewer), sorted."""
    return np.sort(np.random.default_rng(seed).choice(live, size=min(n, len(live)), replace=False))


def _logged(rows: Iterator, total: int, log) -> Iterator:
    seen, start, last = 0, time.perf_counter(), time.perf_counter()
    for keys, acts in rows:
        seen += len(acts)
        if time.perf_counter() - last > LOG_EVERY_S:
            last = time.perf_counter()
            log(f"latent examples: {seen:,}/{total:,} tokens ({seen / (last - start):,.0f} tokens/s)")
        yield keys, acts


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@dg.asset(
    partitions_def=model_sae_partitions, deps=[sae, LATENT_STATS], group_name=GROUP, kinds={"parquet"},
    pool="gpu", op_tags=GPU_OP_TAGS, automation_condition=EAGER, output_required=False,
)
def latent_examples(context: dg.AssetExecutionContext, lake: LakeResource):
    """Top, importance-weighted and random windows of the scored latents, with tokens and per-token
    activations, gathered in one streaming pass over the model's activations. Latents that fired in too few
    documents to explain and score are dropped and counted."""
    import torch

    from sae_models.activation_store import ActivationReader
    from sae_models.evals.autointerp import too_few_activations
    from sae_models.evals.examples import gather_examples, to_arrow
    from sae_models.sae import load_sae

    if (p := sweep_partition(context, lake)) is None:
        return
    settings, lake_obj = p.settings, p.lake
    live = _live_latents(lake_obj, p.model, p.name)
    latents = scored_latents(live, settings.autointerp.n_latents, settings.autointerp.seed)
    device = torch_device()
    sae_model = load_sae(lake_obj.path("saes", model=p.model, sae=p.name)).to(device)
    reader = ActivationReader(lake_obj.path("activations", model=p.model))
    start = time.perf_counter()
    with torch.no_grad():
        examples = gather_examples(lambda x: sae_model.encode(x.to(device)).cpu(),
                                   _logged(reader.rows(("doc_id", "pos", "token_id")), reader.n_rows, context.log.info),
                                   latents, example_config(settings))
    seconds = time.perf_counter() - start
    few = too_few_activations(examples, autointerp_config(settings))
    table = to_arrow(examples, keep=~few)
    lake_obj.write_table(LATENT_EXAMPLES, table, model=p.model, sae=p.name)
    context.log.info(f"{p.name}: {len(latents)} latents over {reader.n_rows:,} tokens in {seconds:.1f}s; "
                     f"{int(few.sum())} with too few activations")
    yield dg.MaterializeResult(metadata={
        **table_metadata(table.drop_columns(["tokens", "acts"])),
        "live_latents": len(live), "scored_latents": int((~few).sum()), "too_few_activations": int(few.sum()),
        "seconds": seconds, "latents_per_s": len(latents) / seconds, "tokens_per_s": reader.n_rows / seconds,
        "peak_rss_mb": _peak_rss_mb(),
    })


def make_judge(settings, lake: Lake, log):
    """The judge lake.toml names, with its call cache in lake/judge_cache/."""
    from sae_models.judges import Judge, JudgeCache, JudgeError, Prices

    j = settings.judge
    try:
        if j.backend == "toyworld":
            from sae_models.judges.toyworld import ToyworldBackend

            backend = ToyworldBackend()
        elif j.backend == "openai":
            from sae_models.judges.openai_compat import OpenAICompatibleBackend

            backend = OpenAICompatibleBackend(j.base_url, j.model, j.api_key_env, j.max_concurrency, j.max_retries,
                                              j.timeout_s)
        else:
            from sae_models.judges.local import TransformersChatBackend

            backend = TransformersChatBackend(j.model, device=torch_device())
    except JudgeError as exc:
        raise dg.Failure(str(exc)) from None
    cache = JudgeCache(lake.root / JUDGE_CACHE, backend.name, backend.model)
    return Judge(backend, cache, Prices(j.price_prompt_per_m, j.price_completion_per_m), progress=log)


def _purity(p, latents: np.ndarray, text) -> tuple[list[float | None], list[str | None]]:
    """Toy world only: each latent's ground-truth purity on held-out tokens (see ``latent_purity``; the
    features are the 26 concepts and the word identities) and its best feature; None elsewhere."""
    import torch

    from sae_models.sae import load_sae
    from sae_models.toyworld.truth import latent_purity

    codes, tokens, truth, names = codes_vs_truth(p, load_sae(p.lake.path("saes", model=p.model, sae=p.name)))
    if not truth.any():
        return [None] * len(latents), [None] * len(latents)
    words, word_index = torch.unique(tokens, return_inverse=True)
    features = torch.cat([truth, torch.nn.functional.one_hot(word_index, len(words)).bool()], dim=1)
    labels = names + [f"word:{w.strip()}" for w in text(words.tolist())]
    purity, best = latent_purity(codes[:, latents], features)
    return purity.tolist(), [labels[b] for b in best]


def _summary(p, table: pa.Table, n_expected: int, judge) -> dict:
    from scipy.stats import spearmanr

    det, sim = table.column("detection_score").to_numpy(), table.column("simulation_score").to_numpy()
    concept = table.column("concept100").to_numpy(zero_copy_only=False)
    purity = table.column("concept_purity").to_numpy(zero_copy_only=False)
    has_purity = len(purity) > 2 and not any(x is None for x in purity)
    rho = float(spearmanr(det, purity.astype(float)).statistic) if has_purity else None
    sweep_metrics = p.lake.read_table("sae_metrics", model=p.model, sae=p.name).to_pylist()[0]
    return {
        "architecture": p.variant.architecture, "is_baseline": p.variant.is_baseline, "level": p.variant.level,
        "target_l0": p.variant.target_l0,
        "l0": sweep_metrics["l0"], "mu": float(det[concept].mean()) if concept.any() else None,
        "mu_simulation": float(sim[concept].mean()) if concept.any() else None,
        "mu_all": float(det.mean()) if len(det) else None, "n_scored": table.num_rows,
        "n_concept": int(concept.sum()), "n_too_few": n_expected - table.num_rows,
        "purity_spearman": None if rho is None or np.isnan(rho) else rho, "judge": judge.name,
        **{f"judge_{k}": v for k, v in judge.stats.as_dict().items()},
    }


@dg.multi_asset(
    specs=[dg.AssetSpec(AUTOINTERP, deps=[latent_examples, corpus], group_name=GROUP, kinds={"parquet"},
                        automation_condition=EAGER, skippable=True,
                        description="One row per scored latent: explanations, detection and simulation scores."),
           dg.AssetSpec(INTERPRETABILITY, deps=[latent_examples], group_name=GROUP, kinds={"parquet"},
                        automation_condition=EAGER, skippable=True,
                        description="One row per SAE: mu (mean detection score over CONCEPT100) and judge usage.")],
    partitions_def=model_sae_partitions,
)
def autointerp_evaluation(context: dg.AssetExecutionContext, lake: LakeResource):
    from sae_models.evals.autointerp import TokenText, concept_subset, score_latents
    from sae_models.evals.examples import from_arrow
    from sae_models.judges import JudgeError
    from sae_models.lm import ModelLoadError, load_tokenizer

    if (p := sweep_partition(context, lake)) is None:
        return
    settings, lake_obj, cfg = p.settings, p.lake, autointerp_config(p.settings)
    examples = from_arrow(lake_obj.read_table(LATENT_EXAMPLES, model=p.model, sae=p.name), example_config(settings))
    try:
        tokenizer = load_tokenizer(model_location(p.entry, lake_obj), revision=p.entry.revision,
                                   trust_remote_code=p.entry.trust_remote_code)
    except (ModelLoadError, OSError) as exc:
        raise dg.Failure(f"tokenizer of {p.model}: {exc}") from None
    judge, text = make_judge(settings, lake_obj, context.log.info), TokenText(tokenizer)
    try:
        rows = score_latents(examples, text, judge, cfg)
    except JudgeError as exc:
        raise dg.Failure(f"{p.model} / {p.name}: {exc} ({judge.stats.calls} calls finished and cached; "
                         "a rerun resumes from them)") from None
    concept = set(concept_subset(examples.latents, cfg.n_concept, cfg.seed).tolist())
    purity, feature = _purity(p, examples.latents, text)
    table = pa.Table.from_pylist([{**vars(r), "concept100": r.latent in concept, "concept_purity": pu,
                                   "purity_feature": f} for r, pu, f in zip(rows, purity, feature, strict=True)],
                                 schema=AUTOINTERP_SCHEMA)
    n_expected = min(cfg.n_latents, len(_live_latents(lake_obj, p.model, p.name)))
    summary = {"judge_model": judge.backend.model, **_summary(p, table, n_expected, judge)}
    lake_obj.write_table(AUTOINTERP, table, model=p.model, sae=p.name)
    lake_obj.write_table(INTERPRETABILITY, pa.Table.from_pylist([summary]), model=p.model, sae=p.name)
    context.log.info(f"{p.name}: mu {summary['mu']}, judge {judge.stats}")
    yield dg.MaterializeResult(asset_key=AUTOINTERP, metadata={
        **table_metadata(table.select(["latent", "explanation", "detection_score", "simulation_score"]), 8)})
    yield dg.MaterializeResult(asset_key=INTERPRETABILITY, metadata={
        "summary": dg.MetadataValue.md(markdown_table([summary])),
        **{k: float(v) for k, v in summary.items() if isinstance(v, int | float) and v is not None
           and k in ("mu", "mu_simulation", "purity_spearman", "judge_calls", "judge_cached", "judge_cost_usd",
                     "judge_prompt_tokens", "judge_completion_tokens", "n_too_few")},
    })


AUTOINTERP_SCHEMA = pa.schema([
    ("latent", pa.int32()), ("explanation", pa.string()), ("detection_score", pa.float64()),
    ("simulation_explanation", pa.string()), ("simulation_score", pa.float64()), ("unparseable", pa.int32()),
    ("concept100", pa.bool_()), ("concept_purity", pa.float64()), ("purity_feature", pa.string()),
])


# --- checks -------------------------------------------------------------------------------------------


def _scores(lake: LakeResource, context) -> pa.Table:
    model, name = model_and_sae(context)
    return lake.lake().read_table(AUTOINTERP, model=model, sae=name)


@dg.asset_check(asset=AUTOINTERP, partitions_def=model_sae_partitions, blocking=True)
def autointerp_scores_in_range(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """Detection accuracy in [0, 1], simulation correlation in [-1, 1], no NaN."""
    t = _scores(lake, context)
    det, sim = t.column("detection_score").to_numpy(), t.column("simulation_score").to_numpy()
    bad = int((~((det >= 0) & (det <= 1))).sum() + (~((sim >= -1) & (sim <= 1))).sum())
    return dg.AssetCheckResult(passed=bad == 0, metadata={"out_of_range": bad, "latents": t.num_rows})


@dg.asset_check(asset=AUTOINTERP, partitions_def=model_sae_partitions, blocking=True)
def autointerp_concept_subset_complete(context: dg.AssetCheckExecutionContext,
                                       lake: LakeResource) -> dg.AssetCheckResult:
    """CONCEPT100 has min(n_concept, scored latents) members, every one scored with an explanation."""
    t = _scores(lake, context)
    want = min(lake.settings().autointerp.n_concept, t.num_rows)
    concept = t.filter(t.column("concept100"))
    explained = sum(bool(e) for e in concept.column("explanation").to_pylist())
    return dg.AssetCheckResult(passed=concept.num_rows == want and want > 0,
                               metadata={"concept100": concept.num_rows, "expected": want, "explained": explained})


REPORT_TABLE = "interpretability_by_kind"


@dg.asset(deps=[AUTOINTERP, INTERPRETABILITY], group_name="analysis", kinds={"duckdb", "parquet"},
          automation_condition=dg.AutomationCondition.eager())
def interpretability_report(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """[C23] Figure 2 across models: mean detection and simulation score of the CONCEPT100 latents with 95%
    intervals, per dictionary kind (SAE architectures vs the neuron / random / PCA / ICA baselines); and on the
    toy world the truth check, Spearman of detection score vs ground-truth concept purity per model."""
    import duckdb
    from scipy.stats import spearmanr, t

    from assets.metadata import image_md, kind_bars
    from assets.sql import create_views, query_text

    lake_obj = lake.lake()
    with duckdb.connect() as con:
        create_views(con, lake_obj.root, [AUTOINTERP, INTERPRETABILITY])
        rows = con.sql(query_text(REPORT_TABLE)).pl().to_dicts()
        truth = con.sql("SELECT model, detection_score, concept_purity FROM autointerp "
                        "WHERE concept_purity IS NOT NULL").pl()
    for row in rows:
        q = float(t.ppf(0.975, max(row["n"] - 1, 1)))
        row["detection_ci"], row["simulation_ci"] = q * (row["detection_se"] or 0), q * (row["simulation_se"] or 0)
    lake_obj.write_table(REPORT_TABLE, pa.Table.from_pylist(rows))
    png = kind_bars(rows, [("detection", "detection score [SB]"), ("simulation", "simulation score [C23]")],
                    "CONCEPT100 latents, mean and 95% CI per dictionary kind")
    lake_obj.write_file("reports", "interpretability_by_kind.png", png)
    rho = {m: float(spearmanr(g["detection_score"], g["concept_purity"]).statistic)
           for (m,), g in truth.group_by("model")}
    context.log.info(f"Spearman(detection, purity) per model: {rho}")
    return dg.MaterializeResult(metadata={
        "figure": image_md(png, "interpretability by dictionary kind"),
        "table": dg.MetadataValue.md(markdown_table([{k: r[k] for k in ("model", "kind", "n", "detection",
                                                                        "detection_ci", "simulation", "simulation_ci")}
                                                     for r in rows])),
        **{f"spearman_purity/{m}": v for m, v in rho.items()},
    })
