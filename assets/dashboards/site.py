"""One SAE's dashboard as files: ``index.html`` (every latent, sortable and filterable), ``latent.html`` (one
latent's panels, chosen by the URL's ``#``), ``data/index.js`` (the index's rows) and ``data/latents-<n>.js``
(the panels of ``per_page`` latents each, loaded by the latent page when it needs them)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

# The index's columns: (key, label, decimals shown (None: text), hover text).
INDEX_COLUMNS = [
    ("latent", "latent", 0, "open the latent's page"),
    ("explanation", "explanation", None, "the judge's explanation (scored latents only)"),
    ("detection", "detection", 3, "detection accuracy of the explanation on held-out windows"),
    ("detection_balanced", "balanced", 3, "detection accuracy balanced over activating and random windows"),
    ("simulation", "simulation", 3, "correlation of simulated with true activations"),
    ("firing_frequency", "frequency", 4, "share of held-out tokens where it fires"),
    ("max_activation", "max act", 3, "largest held-out activation"),
    ("delta_c1", "DeltaC_1", 3, "Delta Token Confidence at the neutral prompt"),
    ("output_score", "S_out", 3, "output score"),
    ("steering_hm", "steering", 3, "test harmonic mean of the steered answers' ratings at the chosen factor"),
    ("unsteered_hm", "unsteered", 3, "the same ratings with no steering"),
    ("truth", "ground truth", None, "the world's feature the latent is purest for (toy world)"),
    ("token_eta2", "eta2", 3, "share of its variance the token's identity explains"),
]


@dataclass
class SAETables:
    """One SAE's rows from the lake, a table left empty when it has not been materialized for this SAE."""

    latent_stats: list[dict]
    latent_profiles: list[dict] = field(default_factory=list)
    autointerp: list[dict] = field(default_factory=list)
    latent_examples: list[dict] = field(default_factory=list)
    feature_scores: list[dict] = field(default_factory=list)
    steering_concepts: list[dict] = field(default_factory=list)
    steering: list[dict] = field(default_factory=list)
    steering_generations: list[dict] = field(default_factory=list)
    latent_purity: list[dict] = field(default_factory=list)


def _by_latent(rows: list[dict]) -> dict[int, dict]:
    return {int(r["latent"]): r for r in rows}


def _round(values, digits: int = 3) -> list:
    return [0 if v == 0 else round(float(v), digits) for v in values]


def _examples(rows: list[dict], token_text: Callable[[int], str]) -> dict[int, dict[str, list]]:
    """Per latent and kind, the windows in rank order: tokens as text (a window's padding past the edge of its
    document, a negative id, as none) and activations."""
    out: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in sorted(rows, key=lambda r: (r["latent"], r["kind"], r["rank"])):
        out[int(r["latent"])][r["kind"]].append({"t": [token_text(t) if t >= 0 else "" for t in r["tokens"]],
                                                  "a": _round(r["acts"])})
    return out


def _steering(tables: SAETables) -> dict[int, dict]:
    """Per steered latent: its concept, chosen factor and test scores, and every answer by factor with its
    three ratings."""
    ratings = {(r["latent"], r["factor"], r["instruction_id"]): r for r in tables.steering}
    answers: dict[int, dict[float, list]] = defaultdict(lambda: defaultdict(list))
    for g in tables.steering_generations:
        r = ratings.get((g["latent"], g["factor"], g["instruction_id"]), {})
        answers[int(g["latent"])][float(g["factor"])].append({
            "split": g["split"], "instruction": g["instruction"], "generation": g["generation"],
            "concept": r.get("concept_rating"), "instruct": r.get("instruct_rating"),
            "fluency": r.get("fluency_rating"), "hm": r.get("hm")})
    out = {}
    for c in tables.steering_concepts:
        latent = int(c["latent"])
        out[latent] = {k: c[k] for k in ("concept", "best_factor", "test_hm", "unsteered_test_hm")} | {
            "factors": [{"factor": f, "rows": rows} for f, rows in sorted(answers[latent].items())]}
    return out


def _index_row(latent: int, stats: dict, auto: dict, scores: dict, steer: dict, purity: dict) -> dict:
    return {"latent": latent, "explanation": auto.get("explanation"), "detection": auto.get("detection_score"),
            "detection_balanced": auto.get("detection_balanced"), "simulation": auto.get("simulation_score"),
            "firing_frequency": stats["firing_frequency"], "max_activation": stats["max_activation"],
            "delta_c1": scores.get("delta_c1"), "output_score": scores.get("output_score"),
            "steering_hm": steer.get("test_hm"), "unsteered_hm": steer.get("unsteered_test_hm"),
            "truth": purity.get("purity_feature"), "token_eta2": stats.get("token_eta2")}


def _cards(row: dict, auto: dict, purity: dict) -> dict:
    windows, positive = auto.get("detect_windows"), auto.get("detect_positive")
    always_no = (windows - positive) / windows if windows else None
    return {"firing_frequency": row["firing_frequency"], "max_activation": row["max_activation"],
            "detection": row["detection"], "detection_always_no": always_no,
            "detection_balanced": row["detection_balanced"], "simulation": row["simulation"],
            "token_eta2": row["token_eta2"], "truth": purity.get("purity_feature"), "purity": purity.get("purity")}


def json_safe(value):
    """JSON-able: NaN and infinities as null, numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def script_literal(value) -> str:
    """``value`` as a JavaScript literal that is safe inside a page: JSON with every ``<`` escaped, so no text
    from the lake can close a script element or open a comment."""
    return json.dumps(json_safe(value), separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")


def _script(name: str, value) -> str:
    return f"window.{name} = Object.assign(window.{name} || {{}}, {script_literal(value)});\n"


def _page(template: str, title: str) -> str:
    folder = resources.files("assets.dashboards") / "templates"
    html = (folder / template).read_text()
    title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (html.replace("{{TITLE}}", title).replace("/*STYLE*/", (folder / "style.css").read_text())
            .replace("/*COMMON*/", (folder / "common.js").read_text()))


SCORE_FIELDS = ("output_score", "delta_c1", "delta_c5", "up_rank", "down_rank", "lens_rank", "lens_prob")


def _scores(rows: list[dict]) -> dict[int, dict]:
    """Per scored latent, its output score and DeltaC with their ranks (S_out's among the SAE's scored latents,
    1 = the highest)."""
    by_s_out = sorted(rows, key=lambda r: -r["output_score"])
    rank = {int(r["latent"]): i + 1 for i, r in enumerate(by_s_out)}
    return {int(r["latent"]): {k: r[k] for k in SCORE_FIELDS} | {"s_out_rank": rank[int(r["latent"])]}
            for r in rows}


def dashboard_files(model: str, sae: str, tables: SAETables, token_text: Callable[[int], str], per_page: int,
                    d_sae: int, cards: list[tuple[str, str]], rank_k: int = 1) -> dict[str, str]:
    """Every file of one SAE's dashboard, by path relative to its folder. ``cards``: the SAE's headline figures
    as (label, value), shown above the index; ``rank_k``: the DeltaC_k the UP and DOWN ranks order by."""
    auto, purity, profiles = (_by_latent(t) for t in (tables.autointerp, tables.latent_purity,
                                                       tables.latent_profiles))
    scores, steer = _scores(tables.feature_scores), _steering(tables)
    examples = _examples(tables.latent_examples, token_text)
    index, panels = [], {}
    for stats in sorted(tables.latent_stats, key=lambda r: r["latent"]):
        f = int(stats["latent"])
        row = _index_row(f, stats, auto.get(f, {}), scores.get(f, {}), steer.get(f, {}), purity.get(f, {}))
        index.append([row[key] for key, *_ in INDEX_COLUMNS])
        p = profiles.get(f)
        panels[f] = {
            "explanation": row["explanation"], "cards": _cards(row, auto.get(f, {}), purity.get(f, {})),
            "histogram": {"max": p["histogram_max"], "counts": p["histogram"], "tokens": p["histogram_tokens"]}
            if p else None,
            "lens": {"top": list(zip(p["lens_top_tokens"], p["lens_top_logits"], strict=True)),
                     "bottom": list(zip(p["lens_bottom_tokens"], p["lens_bottom_logits"], strict=True))} if p else None,
            "scores": scores.get(f), "examples": examples.get(f), "steering": steer.get(f)}
    meta = {"model": model, "sae": sae, "d_sae": d_sae, "per_page": per_page, "cards": cards, "rank_k": rank_k,
            "sort": "detection" if auto else "firing_frequency",
            "about": f"{len(index)} latents; {len(auto)} scored by the judge, {len(steer)} steered, "
                     f"{len(scores)} with output scores. Click a column to sort, a latent to open it."}
    columns = [{"key": k, "label": label, "num": digits is not None, "digits": digits, "title": title}
               for k, label, digits, title in INDEX_COLUMNS]
    files = {"index.html": _page("sae.html", f"{model} / {sae}"), "latent.html": _page("latent.html", f"{sae} latent"),
             "data/meta.js": _script("SAE_DASHBOARD", {"meta": meta}),
             "data/index.js": _script("SAE_DASHBOARD", {"columns": columns, "rows": index})}
    for first in range(0, d_sae, per_page):
        chunk = {str(f): panels.get(f) for f in range(first, min(first + per_page, d_sae))}
        files[f"data/latents-{first // per_page}.js"] = _script("SAE_LATENTS", chunk)
    return files
