"""``patching`` per (model, variant): [C23]'s causal localisation on IOI, the frontier of latents patched and
edit magnitude against KL (sae_models/evals/patching.py); and ``patching_report``: the frontiers of every
sparsity level of one architecture against PCA, per model, as a figure and a table."""

import dagster as dg

from assets.dashboards.pages import PAGE_LINKS, markdown_page
from assets.lakehouse.sql import analysis_connection, query_text
from assets.shared.automation import ON_ANY_UPDATE, PATCHING_EAGER
from assets.shared.metadata import frontier_png, image_md, markdown_table, materialized, page_links
from assets.shared.partitions import model_sae_partitions, sweep_partition
from assets.shared.resources import GPU_OP_TAGS, LakeResource, torch_device

GROUP = "patching"


def _frontier_md(rows: list) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table([
        {"threshold": r.threshold, "reached": r.reached, "latents": r.n_latents, "kl_fit": round(r.kl_fit, 4),
         "kl": round(r.kl, 4), "edit": round(r.edit_magnitude, 3), "logit_diff": round(r.logit_diff, 2),
         "flip_rate": round(r.flip_rate, 3), "kl_random_set": round(r.kl_random_set, 4)} for r in rows]))


@dg.asset(
    partitions_def=model_sae_partitions, deps=["sae", "sae_metrics", "language_model"], group_name=GROUP,
    kinds={"parquet"}, pool="gpu", op_tags=GPU_OP_TAGS, automation_condition=PATCHING_EAGER,
)
def patching(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """One row per KL threshold: the latent set greedy dropping keeps on the fit pairs, and on held-out IOI
    prompt pairs its KL to the counterfactual run, edit magnitude, logit difference and flip rate, beside
    nothing patched and everything patched. Runs for the variants ``[patching] variants`` names."""
    from sae_models.evals.patching import PatchingError, run_patching, toyworld_ioi_pairs

    p = sweep_partition(context, lake)
    cfg = p.settings.patching
    try:
        fit, held = toyworld_ioi_pairs(cfg.n_pairs, cfg.n_eval_pairs, cfg.seed)
        run = run_patching(p.load_lm(), p.load_sae(torch_device()), p.entry.layer, p.entry.hook, fit, held, cfg,
                           p.identity(), context.log.info)
    except PatchingError as exc:
        raise dg.Failure(f"{p.model} / {p.name}: [patching] {exc}") from None
    rec = p.record("patching")
    table = p.lake.write_table("patching", run.rows, rec, model=p.model, sae=p.name)
    first = run.rows[0]
    context.log.info(f"{p.name}: {first.n_candidates} differing latents, {run.summary.patched_runs} patched runs "
                     f"in {run.summary.seconds:.1f}s")
    return materialized(rec, {
        "path": dg.MetadataValue.path(str(table)), "dagster/row_count": len(run.rows), "seconds": run.summary.seconds,
        "patched_runs_per_s": run.summary.runs_per_second, "n_candidates": first.n_candidates,
        "ioi_accuracy": first.ioi_accuracy, "kl_unpatched": first.kl_unpatched,
        "kl_all_patched": first.kl_all_patched, "frontier": _frontier_md(run.rows),
    })


def _pivot(rows: list[dict], thresholds: list[float]) -> list[dict]:
    """One row per dictionary: "latents / edit" at each threshold it reaches."""
    out: dict[tuple, dict] = {}
    for r in rows:
        row = out.setdefault((r["model"], r["sae"]), {"model": r["model"], "dictionary": r["sae"],
                                                      "differing latents": r["n_candidates"],
                                                      "KL all patched": max(r["kl_all_patched"], 0.0)})
        row[f"KL<={r['threshold']:g}"] = f"{r['n_latents']} / {r['edit']:.2f}" if r["reached"] else "–"
    return [{**row, **{f"KL<={t:g}": row.get(f"KL<={t:g}", "–") for t in thresholds}} for row in out.values()]


def compose(rows: list[dict], refused: list[dict], architecture: str, thresholds: list[float]) -> str:
    """patching.md: the finding's table, the baselines and the refused models."""
    lines = ["# Feature patching on IOI ([C23])", "",
             f"Per model, each {architecture} sparsity level and each baseline dictionary: the latents patched and "
             "the edit magnitude (latents / edit) at which greedy dropping keeps KL(p_cf || p_patched) under each "
             "threshold on the fit pairs; the KL shown in the figure is measured on held-out pairs. '–': not "
             "reached even with every differing latent patched (the SAE's reconstruction error carries the rest).",
             "", "![frontiers](patching_frontiers.png)", "", markdown_table(_pivot(rows, thresholds)), ""]
    baselines = {(r["model"]): r for r in rows}
    lines += ["Baselines per model (held-out pairs): nothing patched, the whole counterfactual state.", "",
              markdown_table([{"model": m, "ioi_accuracy": r["ioi_accuracy"], "chance": r["chance_accuracy"],
                               "kl_unpatched": r["kl_unpatched"], "edit_counterfactual": r["edit_counterfactual"]}
                              for m, r in sorted(baselines.items())]), ""]
    if refused:
        lines += ["Not shown: models that do not solve IOI (their frontiers would measure nothing).", "",
                  markdown_table(refused), ""]
    return "\n".join(lines)


@dg.asset(deps=["patching"], group_name=GROUP, kinds={"duckdb", "markdown"}, automation_condition=ON_ANY_UPDATE)
def patching_report(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """lake/reports/patching.md and patching_frontiers.png: every sparsity level of ``[patching]
    report_architecture`` against the baselines (PCA in black), per model that solves IOI."""
    settings, lake_obj = lake.settings(), lake.lake()
    cfg = settings.patching
    with analysis_connection(lake_obj, lake_obj.tables(), ["patching"], []) as con:
        rows = con.sql(query_text("patching_frontier")).pl().to_dicts()
    shown = [r for r in rows if r["ioi_accuracy"] >= cfg.min_ioi_accuracy
             and (r["architecture"] == cfg.report_architecture or r["is_baseline"])]
    refused = sorted({(r["model"], r["ioi_accuracy"], r["chance_accuracy"]) for r in rows
                      if r["ioi_accuracy"] < cfg.min_ioi_accuracy})
    png = frontier_png(shown, cfg.report_architecture,
                       f"IOI feature patching: {cfg.report_architecture} sparsities against the baselines")
    text = compose(shown, [{"model": m, "ioi_accuracy": a, "chance": c} for m, a, c in refused],
                   cfg.report_architecture, sorted(cfg.thresholds))
    lake_obj.write_file("reports", "patching_frontiers.png", png)
    path = lake_obj.write_file("reports", "patching.md", text.encode())
    page = lake_obj.write_file("reports", "patching.html",
                               markdown_page(text, "IOI feature patching", PAGE_LINKS).encode())
    context.log.info(f"patching report: {path} ({len({r['sae'] for r in shown})} dictionaries)")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        **page_links(str(page)), "frontiers": image_md(png, "patching frontiers"),
        "report": dg.MetadataValue.md(text.split("![frontiers](patching_frontiers.png)", 1)[1]),
    })
