"""The report's sections that hold the pipeline against the toy world's own answers: the world's answer to the
question beside the pipeline's (the report opens on it), each instrument against its judge-free truth by group of
latents, and which cheap per-SAE metric predicts steering utility."""

from assets.shared.metadata import markdown_table

WORLD = "true_interpretability vs true_steerability"
ANSWERS = ((WORLD, "the world's truth", ("true_interpretability", "true_steerability")),
           ("mu vs g", "the pipeline: mu vs g", ("mu", "g")),
           ("mu vs gain", "the pipeline: mu vs gain", ("mu", "gain")))
TRUTH_TAU = 0.5  # tau-b against its truth an instrument must reach, with its interval above 0


def fmt(value, digits: int = 2) -> str:
    """A number to two decimals (or ``digits``); a dash for none."""
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_p(value: float | None) -> str:
    """A p-value: three decimals, or scientific below 0.001; a dash for none."""
    return "–" if value is None else f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def _ci(row: dict) -> str:
    return f"[{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]" if row.get("ci_low") is not None else "–"


def world_answer_section(ranks: list[dict], reliability: list[dict]) -> list[str]:
    """Per model, overall and as Psi: tau-b of the world's two truths beside the pipeline's tau-b(mu, g) and
    tau-b(mu, gain), each with the ceiling its two sides' reliabilities set. Empty without the world's truths."""
    world = [r for r in ranks if r["comparison"] == WORLD and r["tau_b"] is not None]
    if not world:
        return []
    ceiling = {(r["model"], r["instrument"], r["partner"]): r["tau_ceiling"] for r in reliability if r["partner"]}
    table, above = [], []
    for comparison, label, pair in ANSWERS:
        for r in ranks:
            if r["comparison"] != comparison or r["grouping"] not in ("model", "overall", "psi"):
                continue
            if r["grouping"] == "psi" and r["group"] != "Psi":
                continue
            where = {"model": r["group"], "overall": "all models", "psi": "Psi (axis-controlled)"}[r["grouping"]]
            cap = ceiling.get((r["group"], *pair))
            table.append({"answer": label, "SAEs": where, "n": r["n"], "tau_b": fmt(r["tau_b"], 3),
                          "95% CI": _ci(r), "p": fmt_p(r["p_value"]), "reliability ceiling": fmt(cap)})
            if cap is not None and r["tau_b"] is not None and abs(r["tau_b"]) > cap:
                above.append(f"{comparison} on {r['group']} ({fmt(r['tau_b'])} against {fmt(cap)})")
    return ["## The world's answer and the pipeline's", "",
            "On the toy world the question has an answer that needs no judge: true_interpretability (the balanced "
            "detection accuracy, on the windows the judge scored, of an exact one-feature explanation chosen on the "
            "windows the judge explained from) against true_steerability (the rise of the steered latents' concept "
            "words in the LM's next-token distribution, teacher-forced, the instruction kept). Beside it, what the "
            "judge-based pipeline says. "
            "This is this world's answer, a property of how its grammar and its small LMs were built, not a claim "
            "about LLMs. The ceiling is the largest tau-b the two sides' split-half reliabilities allow (the "
            "Reliability section): where it is near 0, neither answer can be read.", "",
            markdown_table(table), "",
            *([f"Above its ceiling at the point estimates: {'; '.join(above)}. The ceilings come from "
               "reliabilities estimated on 20 SAEs (wide intervals, Reliability section) and assume the two sides' "
               "noise is independent. mu and g average over the same latents (the steered concepts are CONCEPT100 "
               "latents), and latent by latent a detection score and a steering score are related (section "
               "'Latent level'), so part of their tau-b is the shared draw of latents, not a difference between "
               "SAEs; for the two truths no such shared part is measured.", ""] if above else [])]


def _verdict(row: dict, truth_reliable: bool) -> str:
    """'yes' when the latent-disjoint tau-b reaches TRUTH_TAU with its interval above 0 and the truth itself
    ranks SAEs (its split-half reliability's interval above 0)."""
    if not truth_reliable:
        return "truth unreadable"
    tau, low = row["tau_disjoint"], row["disjoint_low"]
    if tau is None:
        return "–"
    return "yes" if tau >= TRUTH_TAU and low is not None and low > 0 else "no"


def truth_table(validity: list[dict], reliability: list[dict]) -> list[str]:
    """Each instrument against its judge-free truth over a model's SAEs, per group of latents: on the same latents
    and on disjoint halves of them, with the ceiling the reliabilities set (over all latents)."""
    from sae_models.evals.validity import DISJOINT_SPLITS

    rows = [r for r in validity if r["against"] != "corruption"]
    if not rows:
        return []
    ceiling = {(r["model"], r["instrument"], r["partner"]): r["tau_ceiling"] for r in reliability if r["partner"]}
    reliable = {(r["model"], r["instrument"]) for r in reliability
                if r["partner"] is None and r["ci_low"] is not None and r["ci_low"] > 0}
    table = [{"model": r["model"], "latents": r["latents"], "per SAE": fmt(r["latents_per_sae"], 0),
              "instrument": r["instrument"], "truth": r["against"], "SAEs": r["n"],
              "same latents": f"{fmt(r['tau_b'])} {_ci(r)}",
              "disjoint halves": (f"{fmt(r['tau_disjoint'])} [{fmt(r['disjoint_low'])}, {fmt(r['disjoint_high'])}]"
                                  if r["tau_disjoint"] is not None else "–"),
              "ceiling": fmt(ceiling.get((r["model"], r["instrument"], r["against"]))) if r["latents"] == "all"
              else "",
              "tracks it": _verdict(r, (r["model"], r["against"]) in reliable)} for r in rows]
    versions = sorted({(r["judge_model"], r["world_version"]) for r in rows if r["judge_model"]})
    return ["### Against the world's truths", "",
            "Per model over its SAEs (no baselines, twins or oracles): Kendall tau-b between each instrument and its "
            "judge-free truth: mu, mu_balanced and mu_simulation against true_interpretability over the CONCEPT100 "
            "latents; g and g_lift against true_steerability over the steered latents with a truth (g_dtc, a "
            "selection, over all); and the world's two truths against each other. `single_word`: latents whose "
            "current token's identity explains half or more of their activation variance on held-out tokens (a "
            "judge that reads the windows' words is near-circular there); `other`: the contextual rest; `per SAE`: "
            "the median latents of the group per SAE. 'Same latents': both sides averaged over the same latents, "
            "with a 95% BCa interval over SAEs; it is inflated by their shared noise (for mu, the same windows "
            "too). 'Disjoint halves': the instrument on one random half of each SAE's latents, the truth on the "
            f"other, averaged over {DISJOINT_SPLITS} splits, 95% percentile interval over SAEs; it is deflated by "
            "using half the latents on each side. The truth lies between. 'Tracks it': the disjoint tau-b at least "
            f"{TRUTH_TAU} with its interval above 0, where the truth itself ranks SAEs (its split-half "
            "reliability's interval above 0, Reliability section; else 'truth unreadable'). Unadjusted for the "
            f"{len(rows)} rows. Measured under " + ", ".join(f"judge {j}, world {w}" for j, w in versions) + ".", "",
            markdown_table(table), ""]


def proxies_section(rows: list[dict]) -> list[str]:
    """Which per-SAE metric ranks SAEs by g and by true steerability, Holm-adjusted."""
    if not rows:
        return []
    table = [{"model": r["model"], "metric": r["metric"], "target": r["target"], "SAEs": r["n"],
              "tau_b": fmt(r["tau_b"]), "95% CI": _ci(r), "p": fmt_p(r["p_value"]), "Holm p": fmt_p(r["p_holm"])}
             for r in rows]
    found = [f"{r['model']} {r['metric']} ~ {r['target']} ({fmt(r['tau_b'])})" for r in rows
             if r["p_holm"] is not None and r["p_holm"] < 0.05]
    return ["## Which cheap metric predicts steering utility", "",
            "Per model over its SAEs: Kendall tau-b of each per-SAE metric against g and against the world's "
            "true_steerability, with the permutation p and Holm's adjustment over the model's comparisons.", "",
            markdown_table(table), "",
            ("Significant after Holm's adjustment: " + "; ".join(found) + "." if found
             else "No metric predicts either target after Holm's adjustment."), ""]
