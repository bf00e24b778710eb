"""``report``: lake/reports/report.md and its figures, the paper's Tables 1 to 3 as this lake's tables give
them, with the baselines beside the SAEs and, on the toy world, how each measure ranks the SAEs against the
ground truth. Rewritten whenever one of its inputs updates; the same shows in the asset's metadata."""

from datetime import UTC, datetime

import dagster as dg

from assets.dashboards.pages import PAGE_LINKS, markdown_page
from assets.defs.analysis.report_truth import fmt, fmt_p, proxies_section, truth_table, world_answer_section
from assets.lakehouse.sql import analysis_connection, query_text
from assets.shared.automation import ON_ANY_UPDATE
from assets.shared.metadata import (
    control_png,
    image_md,
    ladder_png,
    markdown_table,
    mu_vs_g_png,
    page_links,
    tau_bars_png,
)
from assets.shared.resources import LakeResource

INPUTS = ["sae_summary", "rank_agreement", "selection_lift", "control_contrast", "control_separation",
          "instrument_reliability", "instrument_validity", "proxies"]
# Read for the models' table, what steering adds, a steered example and the contextual latents' mix by kind.
READS = ["lm_eval", "autointerp", "latent_stats", "latent_purity", "steering", "steering_concepts",
         "steering_generations", "interpretability"]
VALID_TAU = 0.8  # |tau-b| against the known corruption level an instrument must reach, with the right sign
TRUTHS = ("concept_f1", "true_interpretability", "true_steerability")  # the world's own answers, not instruments
LM_COLUMNS = ("model", "control_of", "held_out_loss", "unigram_cross_entropy", "topic_consistency", "ioi_accuracy",
              "ioi_accuracy_abba", "ioi_accuracy_baba", "ioi_accuracy_train_pairs", "ioi_logit_diff", "steps")
RANK_COLUMNS = ("group", "n", "pairs", "tau_b", "ci_low", "ci_high", "p_value", "note")
REFERENCE = {  # [W25] on real LLMs: the expected shape, not a target
    "mu vs g": "[W25]: overall 0.298 (n = 90, CI [0.159, 0.419]); Psi 0.250",
    "mu vs gain": "[W25]: overall -0.069 (CI [-0.202, 0.067]); Psi -0.057",
}


def _rank_table(rows: list[dict], *leading: str) -> list[dict]:
    return [{k: r[k] for k in (*leading, "grouping", *RANK_COLUMNS)} for r in rows]


def _rank_section(rows: list[dict], comparison: str, heading: str) -> list[str]:
    table = _rank_table([r for r in rows if r["comparison"] == comparison])
    empty = "(no SAE has both scores" + (": a gain needs g > 0)" if "gain" in comparison else ")")
    lines = [f"## {heading}", "", markdown_table(table) if table else empty, ""]
    if comparison in REFERENCE:
        lines += [REFERENCE[comparison] + ".", ""]
    return lines


def _baselines_section(rows: list[dict]) -> list[str]:
    return ["## Baselines beside the SAEs", "",
            "Baseline dictionaries (neuron, random, PCA, ICA) are not items of the rank analysis; here they sit "
            "beside the SAEs' mean. `mu_always_no` is what answering \"no\" to every window scores, `g_unsteered` "
            "what the same ratings give with no steering at all.", "", markdown_table(rows), ""]


def _side_by_side(contrast: list[dict]) -> list[dict]:
    """Per dictionary, L0 on each side, then one cell per score: trained / twin (difference [95% CI])."""
    from sae_models.evals.control import METRICS

    def cell(r: dict | None) -> str:
        if r is None or r["trained"] is None or r["twin"] is None:
            return "–"
        ci = f" [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]" if r["ci_low"] is not None else ""
        return f"{r['trained']:.3f} / {r['twin']:.3f} ({r['difference']:+.3f}{ci})"

    by_key = {(r["model"], r["sae"], r["metric"]): r for r in contrast}
    rows = list({(r["model"], r["sae"]): r for r in contrast}.values())
    return [{"model": r["model"], "sae": r["sae"], "L0": f"{r['l0_trained']:.1f} / {r['l0_twin']:.1f}",
             **{k: cell(by_key.get((r["model"], r["sae"], k))) for k in METRICS}} for r in rows]


def _verdict(separation: list[dict]) -> str:
    """Per model, the scores that can measure a twin ranked by how one-sided their pairs are (either way); the
    floored ones named apart; the ground truth's own figure."""
    from sae_models.evals.control import ALL_MODELS, FLOORED, TRUTH, ControlSeparation, ranked_separators

    lines = []
    for model in sorted({r["model"] for r in separation} - {ALL_MODELS}):
        rows = [ControlSeparation(**r) for r in separation if r["model"] == model]
        ranked = "; ".join(f"{r.metric} {r.trained_higher}-{r.twin_higher} (AUROC {r.auroc:.2f})"
                           for r in ranked_separators(rows))
        truth = [r for r in rows if r.metric == TRUTH and r.trained is not None]
        lines.append(f"{model}, pairs won by the trained SAE - by the twin's, best separator first: {ranked}"
                     + (f"; ground truth {TRUTH} {truth[0].trained:.3f} against {truth[0].twin:.3f}, "
                        f"{truth[0].trained_higher}-{truth[0].twin_higher}." if truth else "."))
    return ("\n\n".join(lines) + f"\n\nNot ranked: {', '.join(sorted(FLOORED))}, which an untrained LM floors (the "
            "judge rates its text 0 for fluency with or without steering, so a twin's harmonic means are 0).")


def _control_section(contrast: list[dict], separation: list[dict]) -> list[str]:
    """Trained vs random-weights twin: which score separates them best, and every dictionary."""
    if not contrast:
        return []
    return ["## Control: trained models against their random-weights twins", "",
            "Each twin has its model's config and tokenizer and weights drawn by the family's own initialiser, and "
            "runs through the same pipeline. A pair is one variant on both; `wins` and the sign test are paired, "
            "the AUROC is not (the chance that a trained SAE outscores a twin SAE: 0.5 cannot tell them apart, 0 "
            "and 1 separate perfectly). The 'all models' rows pool two models as if their pairs were independent: "
            "read the per-model rows first. Intervals need 5 units or pairs, and condition on one twin draw, one "
            "SAE seed and one judge run.", "", _verdict(separation), "",
            "![trained vs twin](control.png)", "", markdown_table(separation), "",
            "Per dictionary: held-out L0 trained / twin (an L1 coefficient need not give one L0 on both), then "
            "trained / twin (difference trained - twin [95% BCa interval over the score's units]).",
            "", markdown_table(_side_by_side(contrast)), ""]


def _reliability_section(rows: list[dict]) -> list[str]:
    """Each instrument's split-half reliability per model, the ones that cannot rank SAEs named, and the ceilings
    they set on the rank comparisons."""
    if not rows:
        return []
    single = [r for r in rows if r["partner"] is None]
    table = [{"model": r["model"], "instrument": r["instrument"], "SAEs": r["n_saes"], "units per SAE": r["units"],
              "half r": fmt(r["half_r"]), "reliability": fmt(r["reliability"]),
              "95% CI": f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"} for r in single]
    noise = [f"{r['model']} {r['instrument']}" for r in single if r["ci_low"] is None or r["ci_low"] <= 0]
    low = [f"{r['model']} {r['instrument']} ({fmt(r['reliability'])})" for r in single
           if r["reliability"] is not None and r["reliability"] < 0.6 and not (r["ci_low"] is None or r["ci_low"] <= 0)]
    ceilings = [{"model": r["model"], "pair": f"{r['instrument']} ~ {r['partner']}",
                 "largest possible tau": fmt(r["tau_ceiling"])} for r in rows if r["partner"] is not None]
    return ["## Instrument reliability", "",
            "Per model over its SAEs (no baselines, no twins): each instrument computed on two disjoint random "
            "halves of every SAE's units (CONCEPT100 latents for mu, steered concepts for g; g_dtc and the gain "
            "rerun selection on each half), the Pearson correlation between the halves across SAEs corrected to "
            "full length (Spearman-Brown), averaged over 200 splits; the interval resamples the SAEs. "
            "g_lift is g - g_unsteered.", "", markdown_table(table), "",
            ("Indistinguishable from noise (the interval reaches 0 or lies below it), so no tau with them can mean "
             "anything: "
             + ", ".join(noise) + "." if noise else "No instrument's interval reaches 0."),
            *(["Below 0.6: " + ", ".join(low) + "."] if low else []), "",
            "The largest Kendall tau two instruments of these reliabilities can show, (2/pi) arcsin(sqrt(rel_x "
            "rel_y)):", "", markdown_table(ceilings), ""]


def _latent_level_section(rows: list[dict]) -> list[str]:
    """Per model, the latent-level Pearson r of the detection score with the steering scores, Fisher intervals."""
    from sae_models.stats import pearson_interval

    if not rows:
        return []
    table = []
    for r in rows:
        low, high = pearson_interval(r["r"], r["latents"])
        table.append({"model": r["model"], "latents": r["latents"], "detection score vs": r["score"],
                      "Pearson r": fmt(r["r"]), "95% CI": f"[{fmt(low)}, {fmt(high)}]"})
    return ["## Latent level: where mu vs g comes from", "",
            "An SAE's mu and g are means over overlapping latents (its steered concepts are drawn from its "
            "CONCEPT100 latents), so what holds latent by latent shows between SAEs too. Per model, over the "
            "steered latents of its SAEs: the detection score (mu's unit) against the test-half steering score "
            "(g's unit), the same prompts' unsteered score, and their difference. The intervals treat latents as "
            "independent (`sql/latent_level.sql`).", "", markdown_table(table), ""]


def _models_section(lm_rows: list[dict]) -> list[str]:
    if not lm_rows:
        return []
    rows = [{k: (round(r[k], 3) if isinstance(r[k], float) else r[k]) for k in LM_COLUMNS if k in r} for r in lm_rows]
    return ["## The models", "",
            "Held-out loss against the unigram baseline (nats per token); IOI accuracy on name pairs no training "
            "document holds, over both orders and per order (ABBA: the indirect object named first; BABA: second; "
            "chance is a guess among the names), beside the training pairs.", "", markdown_table(rows), ""]


def _lift_section(lift: list[dict], examples: list[dict], by_explanation: list[dict] = ()) -> list[str]:
    """What steering adds over not steering, per model with its interval over SAEs, by the kind of explanation
    of the steered latents, and a steered example."""
    from sae_models.stats import t_half_width

    rows = []
    for r in lift:
        half = t_half_width(r["lift_sd"] / r["saes"] ** 0.5, r["saes"]) if r["lift_sd"] is not None else None
        rows.append({"model": r["model"], "SAEs": r["saes"], "g": fmt(r["g"], 3),
                     "g_unsteered": fmt(r["g_unsteered"], 3), "g - g_unsteered": fmt(r["lift"], 3),
                     "95% CI": "–" if half is None else f"[{r['lift'] - half:+.3f}, {r['lift'] + half:+.3f}]",
                     "SAEs above unsteered": f"{r['saes_above']} of {r['saes']}"})
    lines = ["## What steering adds", "",
             "Per model, over its SAEs: g beside the same test prompts' unsteered score, and their difference with "
             "a Student-t interval over SAEs.", "", markdown_table(rows), ""]
    if by_explanation:
        lines += ["By the shape of the steered latent's explanation (`sql/steering_by_explanation.sql`), over "
                  "concepts, the difference with its standard error:", "", markdown_table([
                      {"model": r["model"], "explanation": r["explanation"], "concepts": r["concepts"],
                       "g": fmt(r["g"], 3), "g_unsteered": fmt(r["g_unsteered"], 3),
                       "g - g_unsteered": f"{r['lift']:+.3f} ± {fmt(r['lift_se'], 3)}"} for r in by_explanation]),
                  ""]
    for e in examples:
        lines += [f"{e['model']}, {e['sae']} latent {e['latent']} ({e['concept']}), asked `{e['instruction']}`, "
                  f"steered at {e['factor']:g} x m_f (its dev-chosen factor): concept {e['concept_rating']}, "
                  f"instruct {e['instruct_rating']}, fluency {e['fluency_rating']}.", "",
                  f"- unsteered: `{e['unsteered']}`", f"- steered: `{e['steered']}`", ""]
    return lines


def _contextual_section(summary: list[dict], kinds: list[dict]) -> list[str]:
    """The contextual share of the CONCEPT100 latents per model, twins beside, and by kind of ground truth."""
    saes = [r for r in summary if not r["is_baseline"] and r["contextual_share"] is not None]
    if not saes:
        return []
    per_model = []
    for model in sorted({r["model"] for r in saes}):
        shares = [r["contextual_share"] for r in saes if r["model"] == model]
        control_of = next(r["control_of"] for r in saes if r["model"] == model)
        per_model.append({"model": model, "control of": control_of or "", "SAEs": len(shares),
                          "mean share": fmt(sum(shares) / len(shares)), "min": fmt(min(shares)),
                          "max": fmt(max(shares))})
    return ["## Contextual latents", "",
            "A latent is contextual when the current token's identity explains under half of its activation "
            "variance on held-out tokens (eta squared over token types): it responds to context, not to one "
            "token. Share of each SAE's CONCEPT100 latents (`sae_summary.contextual_share`), per model:", "",
            markdown_table(per_model), "",
            "By the kind of each latent's best ground-truth feature (toy world; `word` is a single token):", "",
            markdown_table(kinds), ""]


PATCHING_SECTION = ["## Causal localisation: feature patching on IOI ([C23])", "",
                    "Latents patched and edit magnitude against KL, per sparsity level against PCA; the table and "
                    "baselines are in [patching.md](patching.md).", "", "![patching frontiers](patching_frontiers.png)",
                    ""]


def _validity_section(validity: list[dict], oracles: list[dict], reliability: list[dict]) -> list[str]:
    """Each instrument's tau-b against the oracles' known corruption level, a verdict, and the means per level; then
    each steering instrument against the world's judge-free true steerability over the SAEs."""
    against_level = [r for r in validity if r["against"] == "corruption"]
    if not validity:
        return []
    table = [{"model": r["model"], "instrument": r["instrument"], "oracles": r["n"], "tau_b": fmt(r["tau_b"]),
              "best possible": fmt(-r["tau_max"] if r["tau_max"] is not None else None),
              "p": fmt_p(r["p_value"]) + ("" if r["p_exact"] else " (permutations)"), "ranks them": _verdict_of(r)}
             for r in against_level]
    failing = [f"{r['model']} {r['instrument']} ({fmt(r['tau_b'])})" for r in against_level
               if _verdict_of(r) != "yes" and r["instrument"] not in TRUTHS]
    doubt = [f"{r['model']} {r['instrument']} ({fmt(r['tau_b'])})" for r in against_level
             if _verdict_of(r) != "yes" and r["instrument"] in TRUTHS]
    levels: dict[tuple, list[dict]] = {}
    for o in oracles:
        levels.setdefault((o["model"], o["corruption"]), []).append(o)
    shown = ("mu", "mu_balanced", "mu_simulation", "g", "g_lift", "g_dtc", *TRUTHS)
    means = [{"model": m, "corruption": f"{q:g}", "n": len(rows),
              **{k: fmt(_mean([r[k] for r in rows]), 3) for k in shown}}
             for (m, q), rows in sorted(levels.items())]
    return ["## Instruments against known answers", "", "### The oracle dictionaries", "",
            "Per model, oracle dictionaries of known quality: one latent per ground-truth concept of the toy world "
            "(its encoder Fisher's linear discriminant of the concept, its decoder the concept's class-mean "
            "difference), and copies in which a fraction of the latents (the corruption level) read and write a "
            "random direction instead, at each level and seed of [oracle]. They go through the same assets as "
            "any SAE. An instrument that measures dictionary quality falls as the level rises: tau-b against the "
            f"level near its floor (here: at most -{VALID_TAU}, p < 0.05; with several dictionaries per level "
            "|tau-b| cannot reach 1: the best possible for untied scores is shown). p is exact over every "
            "arrangement of the levels, or from 9,999 permutations where scores tie. concept_f1, "
            "true_interpretability and true_steerability are the world's own truths, the check that the oracles "
            "are what they claim. "
            "g_lift is g - g_unsteered. abs_delta_c is DeltaC as a ranking of latents: its items are the oracle "
            "latents, clean or corrupted (a working ranking puts the clean ones first: tau-b below 0; p "
            "asymptotic, latents taken as independent).", "",
            markdown_table(table), "",
            ("Instruments that do not rank the oracles: " + ", ".join(failing) + "." if failing
             else "Every instrument ranks the oracles by their known quality."),
            *([f"The world's own truths do not all rank them ({', '.join(doubt)}): there the ladder itself is in "
               "doubt, not only the instruments."] if doubt else []), "",
            *(["Means per corruption level (and as a figure: the mean and the range over seeds per level):", "",
               markdown_table(means), "", "![oracle ladder](oracle_ladder.png)", ""] if oracles else []),
            *truth_table(validity, reliability)]


def _verdict_of(row: dict) -> str:
    tau, p = row["tau_b"], row["p_value"]
    if tau is None:
        return "undefined"
    if tau > 0:
        return "no: wrong sign"
    return "yes" if tau <= -VALID_TAU and p is not None and p < 0.05 else "no: too weak"


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def compose(summary: list[dict], ranks: list[dict], table2: list[dict], baselines: list[dict],
            patched: bool = False, contrast: list[dict] = (), separation: list[dict] = (),
            reliability: list[dict] = (), contextual_kinds: list[dict] = (), lm_rows: list[dict] = (),
            lift: list[dict] = (), examples: list[dict] = (), latent_level: list[dict] = (),
            by_explanation: list[dict] = (), validity: list[dict] = (), oracles: list[dict] = (),
            proxy_rows: list[dict] = ()) -> str:
    twins = sorted({r["model"] for r in summary if r["control_of"]})
    everything, summary = summary, [r for r in summary if not r["control_of"]]
    saes = [r for r in summary if not r["is_baseline"]]
    n_oracles = sum(r["architecture"] == "oracle" for r in summary)
    models = sorted({r["model"] for r in summary})
    lines = ["# sae-lake report", "",
             f"{len(saes)} SAEs over {len(models)} models ({', '.join(models)}), "
             f"{len(summary) - len(saes) - n_oracles} baseline dictionaries"
             + (f", {n_oracles} oracle dictionaries" if n_oracles else "")
             + f"; written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
             + (f"The control twins ({', '.join(twins)}) have their own section and their own rows of Table 2 "
                f"(not in its 'all models'); the rank analysis "
                f"{'includes' if any(r['controls_included'] for r in ranks) else 'excludes'} their SAEs. "
                if twins else "") +
             "g_dtc is the DTC set chosen on the dev half of the steering rows and scored on the test half; "
             "g_dtc_chosen_on_test is [W25]'s choice on the reported outcome itself. A null tau-b carries its "
             "reason in `note`; psi averages the tau-b of groups of 3 or more SAEs (a pair's tau-b is +-1).", ""]
    lines += world_answer_section(ranks, list(reliability))
    lines += ["![mu vs g](mu_vs_g.png)", "", "![tau by axis](tau_by_axis.png)", ""]
    lines += _models_section(list(lm_rows)) + _lift_section(list(lift), list(examples), list(by_explanation))
    lines += _validity_section(list(validity), list(oracles), list(reliability))
    lines += _reliability_section(list(reliability))
    lines += _rank_section(ranks, "mu vs g", "Table 1: mu vs g (Kendall tau-b over SAEs)")
    lines += ["## Table 2: steering score before and after selection", "", markdown_table(table2), "",
              "Lifts in percent, two ways: of the means, and the mean (and median) of the per-SAE gains.", ""]
    lines += _rank_section(ranks, "mu vs gain", "Table 3: mu vs gain L")
    lines += _rank_section(ranks, "mu vs g_dtc", "mu vs g_dtc")
    lines += _rank_section(ranks, "mu vs g_unsteered", "g's trivial baseline: mu vs g_unsteered")
    lines += _rank_section(ranks, "mu vs g - g_unsteered", "mu vs what steering adds, g - g_unsteered")
    lines += proxies_section(list(proxy_rows)) + _latent_level_section(list(latent_level))
    truth = [r for r in ranks if r["comparison"].startswith("concept_f1") and r["grouping"] in ("overall", "psi")]
    if truth:
        lines += ["## Against the ground truth (toy world)", "",
                  "How each measure ranks the SAEs against the concept-recovery F1 of the world's known concepts.",
                  "", markdown_table(_rank_table(truth, "comparison")), ""]
    lines += _contextual_section(everything, list(contextual_kinds))
    lines += _baselines_section(baselines) + _control_section(list(contrast), list(separation))
    return "\n".join(lines + (PATCHING_SECTION if patched else []))


@dg.asset(deps=[*INPUTS, *READS, "patching_report"], group_name="analysis", kinds={"duckdb", "markdown"},
          automation_condition=ON_ANY_UPDATE)
def report(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """lake/reports/report.md, mu_vs_g.png (before and after selection) and tau_by_axis.png."""
    lake_obj = lake.lake()
    with analysis_connection(lake_obj, lake_obj.tables(), INPUTS + READS, []) as con:
        summary, ranks, lift, contrast, separation, reliability, validity, proxy_rows = (
            con.sql(f"SELECT * FROM {t}").pl().to_dicts() for t in INPUTS)
        oracles = con.sql(query_text("validity_oracles")).pl().to_dicts()
        baselines = con.sql(query_text("report_baselines")).pl().to_dicts()
        kinds, lifts, examples, latent_level, by_explanation = (
            con.sql(query_text(q)).pl().to_dicts()
            for q in ("contextual_by_kind", "steering_lift", "steering_example", "latent_level",
                      "steering_by_explanation"))
        lm_rows = con.sql("SELECT * FROM lm_eval ORDER BY model").pl().to_dicts()
    trained = [r for r in summary if not r["control_of"]]
    saes = [r for r in trained if not r["is_baseline"]]
    scatter = mu_vs_g_png(saes, [r for r in trained if r["is_baseline"] and r["architecture"] != "oracle"],
                          [("g", "before selection: g"), ("g_out", "output score: g_out"),
                           ("g_dtc", "DTC selection: g_dtc")], "mu vs steering utility, one point per SAE")
    comparisons = [c for c in ("mu vs g", "mu vs g_dtc", "mu vs gain", "concept_f1 vs mu", "concept_f1 vs g",
                               "concept_f1 vs g_dtc")
                   if any(r["comparison"] == c for r in ranks)]
    bars = tau_bars_png(ranks, comparisons or ["mu vs g"], "Kendall tau-b with 95% BCa intervals")
    text = compose(summary, ranks, lift, baselines, "patching" in lake_obj.tables(), contrast, separation,
                   reliability, kinds, lm_rows, lifts, examples, latent_level, by_explanation, validity, oracles,
                   proxy_rows)
    if contrast:
        from sae_models.evals.control import METRICS as CONTROL_METRICS

        lake_obj.write_file("reports", "control.png", control_png(contrast, list(CONTROL_METRICS),
                                                                  "each dictionary, trained model vs random twin"))
    if oracles:
        lake_obj.write_file("reports", "oracle_ladder.png", ladder_png(
            oracles, "corruption", ["mu", "mu_balanced", "mu_simulation", "g", "g_lift", "true_interpretability",
                                    "true_steerability"],
            "oracle dictionaries: each score against the corruption level (a working instrument falls)"))
    lake_obj.write_file("reports", "mu_vs_g.png", scatter)
    lake_obj.write_file("reports", "tau_by_axis.png", bars)
    path = lake_obj.write_file("reports", "report.md", text.encode())
    page = lake_obj.write_file("reports", "report.html", markdown_page(text, "sae-lake report", PAGE_LINKS).encode())
    context.log.info(f"report: {path} and {page} ({len(saes)} SAEs)")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)), **page_links(str(page)),
        "mu_vs_g": image_md(scatter, "mu vs g"), "tau_by_axis": image_md(bars, "tau by axis"),
        "report": dg.MetadataValue.md(text.split("![tau by axis](tau_by_axis.png)", 1)[1]),
    })
