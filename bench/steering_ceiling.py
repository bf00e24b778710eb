"""Is it the LM or the dictionaries? How far the world's own topic directions steer each trained toy LM, and how
the lake's SAE latents steer by how close they come to those directions.

Steering utility needs an LM that a direction can steer and a dictionary whose latents are such directions. This
separates the two. Per trained toy model of the lake, at every layer:

- two directions per topic (16), from held-out stories and instruction documents (the ``lm_eval`` split, which
  neither the LMs nor the SAEs were trained on): ``document``, the mean residual of every token of the documents
  on the topic minus the mean of all tokens (the topic as context); ``word``, the same over the tokens the grammar
  labels with the topic (the topic's words: the oracle dictionaries' construction);
- each steered through the pipeline's own protocol and judge: the steering vector is factor x m x d, with m the
  largest projection of a centred held-out residual on d (as m_f is a latent's largest decoded norm), the default
  factors, 10 of the toy instructions per topic (5 dev choose the factor, 5 test score it, the unsteered answers
  to the same 5 as the baseline), the concept text "concept <topic>", as the judge words a topic latent.

Then, at the SAEs' layer: every steered latent of the lake's trained SAEs (no baselines, oracles or twins), by the
largest cosine of its decoder direction with a document direction (signed), apart by whether its explanation names
a topic or sentiment, and its g - g_unsteered from ``steering_concepts``, beside the random-directions baseline
dictionary's steered latents (the null); and, for the latents near a topic direction, per factor, the share of
their rated answers that carry the concept, the instruction's topic, both, and all three ratings: whether a steered
concept joins the answer or replaces its topic.

    .venv/bin/python bench/steering_ceiling.py [lake]
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

import assets.definitions  # noqa: F401 - the code location's load: lake.toml's CPU pin, as a run worker has it
from assets.lakehouse.config import load_settings
from assets.lakehouse.lake import Lake
from assets.lakehouse.sql import read_query

SITE = "resid_post"
KINDS = ("document", "word", "random")
COSINE_BANDS = (-1.0, 0.2, 0.3, 0.5, 1.0)
NEAR = 0.5  # a latent this close to a topic's document direction is called near it
RESAMPLES = 2000


class Directions:
    """Unit steering directions, in the shape ``generate_steering`` reads from an SAE."""

    def __init__(self, directions):
        self.directions = directions

    def decoder_directions(self):
        return self.directions


def residuals(lm, docs: Sequence[dict], layer: int, batch: int = 64):
    """Each document word's residual at ``layer`` (the toy tokenizer: one token per word, after a <bos>)."""
    import torch

    from sae_models.lm import capture, hook_module
    from sae_models.lm.intervene import tokenize

    module, out = hook_module(lm.model, layer, SITE), []
    for start in range(0, len(docs), batch):
        chunk = docs[start:start + batch]
        enc = tokenize(lm, [d["text"] for d in chunk])
        with capture(module) as captured, torch.no_grad():
            lm.model(**enc)
        for j, d in enumerate(chunk):
            n = len(d["text"].split())
            if int(enc["attention_mask"][j].sum()) != n + 1:
                raise SystemExit(f"document {d['doc_id']}: not one token per word; this bench needs a toy model")
            out.append(captured[0][j, 1:1 + n])
    return torch.cat(out)


def topic_directions(hidden, docs: Sequence[dict], topics: Sequence[str]) -> dict:
    """Per kind, the unit directions (one row per topic) and their magnitudes m; ``random``: random unit
    directions with the document directions' magnitudes, rated against the same topics (the null)."""
    import numpy as np
    import torch

    doc_topic = np.array([d["topic"] for d in docs for _ in d["text"].split()], dtype=object)
    word_topic = np.array([next((lab[6:] for lab in labels if lab.startswith("topic:")), None)
                           for d in docs for labels in d["labels"]], dtype=object)
    centred = hidden - hidden.mean(0)
    out = {}
    for kind, labels in (("document", doc_topic), ("word", word_topic)):
        rows = torch.stack([centred[torch.as_tensor(labels == t)].mean(0) for t in topics])
        rows = rows / rows.norm(dim=1, keepdim=True)
        out[kind] = (rows, (centred @ rows.T).max(0).values.tolist())
    noise = torch.randn(len(topics), hidden.shape[1], generator=torch.Generator().manual_seed(len(docs)))
    out["random"] = (noise / noise.norm(dim=1, keepdim=True), out["document"][1])  # the null: same m, no topic
    return out


def steer(lm, slug: str, layer: int, kind: str, directions, magnitudes: Sequence[float], topics: Sequence[str],
          cfg) -> list:
    """The ``ConceptScore`` of each topic direction, steered and rated as the pipeline steers a latent."""
    from sae_models.evals.instructions import toyworld_instructions
    from sae_models.evals.steering import (
        SteeringConcept,
        generate_steering,
        plan_steering,
        rate_steering,
        score_concepts,
    )
    from sae_models.judges import Judge
    from sae_models.judges.toyworld import ToyworldBackend
    from sae_models.lm.generate import row_seed

    concepts = [SteeringConcept(i, m) for i, m in enumerate(magnitudes)]
    text = {i: f"concept {t}" for i, t in enumerate(topics)}
    rows = plan_steering(concepts, toyworld_instructions(), cfg,
                         lambda *key: row_seed(slug, "topic-direction", kind, layer, *key, cfg.seed))
    generations = generate_steering(lm, Directions(directions), concepts, rows, layer, SITE, cfg)
    return score_concepts(rate_steering(generations, text, Judge(ToyworldBackend())), concepts, text)


def mean_interval(values, rng) -> str:
    import numpy as np

    values = np.asarray(values, dtype=float)
    means = values[rng.integers(0, len(values), (RESAMPLES, len(values)))].mean(1)
    low, high = np.quantile(means, [0.025, 0.975])
    return f"{values.mean():+.3f} [{low:+.3f}, {high:+.3f}]"


def ceiling_rows(lm, slug: str, docs: Sequence[dict], topics: Sequence[str], cfg, rng) -> list[str]:
    import numpy as np

    lines = []
    for layer in range(lm.n_layers):
        found = topic_directions(residuals(lm, docs, layer), docs, topics)
        for kind in KINDS:
            scores = steer(lm, slug, layer, kind, *found[kind], topics, cfg)
            lift = [s.test_hm - s.unsteered_test_hm for s in scores]
            lines.append(f"| {slug} | {layer} | {kind} | {np.mean([s.unsteered_test_hm for s in scores]):.3f} | "
                         f"{np.mean([s.test_hm for s in scores]):.3f} | {mean_interval(lift, rng)} | "
                         f"{np.mean([s.test_concept for s in scores]):.2f} | "
                         f"{np.mean([s.test_instruct for s in scores]):.2f} | "
                         f"{np.median([s.best_factor for s in scores]):g} |")
    return lines


def latent_cosines(lake: Lake, slug: str, document) -> dict[tuple[str, int], float]:
    """(SAE, latent) -> the largest cosine of the latent's decoder direction with a document direction, for the
    steered latents of the lake's trained SAEs of ``slug`` (signed: a latent that points away from a topic
    steers away from it)."""
    from sae_models.sae.io import load_sae

    saes = read_query(lake, f"select sae from steering_summary where model = '{slug}' and not is_baseline "
                            "and level is not null order by sae").column("sae").to_pylist()
    out = {}
    for sae in saes:
        latents = read_query(lake, f"select latent from steering_concepts where model = '{slug}' and sae = '{sae}' "
                                   "order by latent").column("latent").to_pylist()
        directions = load_sae(lake.path("saes", model=slug, sae=sae)).decoder_directions().detach()
        cosines = (directions[latents] @ document.T).max(1).values.tolist()
        out.update({(sae, f): c for f, c in zip(latents, cosines, strict=True)})
    return out


def names_a_topic(explanation: str) -> bool:
    """Whether an explanation names a topic or sentiment word group, as the toy judge words one."""
    from sae_models.toyworld.grammar import SENTIMENTS, TOPICS

    return any(explanation.startswith(f"concept {group} ") for group in [*TOPICS, *SENTIMENTS])


def band_rows(lake: Lake, slug: str, cosines: dict, rng) -> list[str]:
    """g - g_unsteered of the steered latents per band of cosine, apart by whether their explanation names a topic
    or sentiment; then the random-directions baseline dictionary's steered latents (the null)."""
    import numpy as np

    rows = read_query(lake, f"select sae, latent, concept, test_hm - unsteered_test_hm as lift from "
                            f"steering_concepts where model = '{slug}'").to_pylist()
    null = [r for r in rows if r["sae"] == "random"]
    rows = [r for r in rows if (r["sae"], r["latent"]) in cosines]
    closeness = np.array([cosines[r["sae"], r["latent"]] for r in rows])
    lines = []
    for low, high in zip(COSINE_BANDS, COSINE_BANDS[1:], strict=False):
        band = (closeness >= low) & (closeness < high) if high < 1 else closeness >= low
        label = f"below {high:g}" if low < 0 else f"{low:g} to {high:g}" if high < 1 else f"{low:g} and above"
        inside = [r for r, b in zip(rows, band, strict=True) if b]
        lines.append(f"| {slug} | {label} | {_by_explanation(inside, rng)} |")
    if null:
        lines.append(f"| {slug} | the random-directions dictionary (any) | {_by_explanation(null, rng)} |")
    return lines


def _by_explanation(rows: Sequence[dict], rng) -> str:
    """Count and mean lift with its interval, for the rows whose explanation names a topic, then the others."""
    import numpy as np

    cells = []
    for named in (True, False):
        lifts = np.array([r["lift"] for r in rows if names_a_topic(r["concept"]) == named])
        cells.append(f"{len(lifts)} | {mean_interval(lifts, rng) if len(lifts) > 1 else '-'}")
    return " | ".join(cells)


def tradeoff_rows(lake: Lake, slug: str, cosines: dict) -> list[str]:
    """Per factor, over every rated answer of the latents near a topic direction: the share that carries the
    concept, the instruction's topic, both, and all three ratings (HM > 0)."""
    import numpy as np

    near = {key for key, c in cosines.items() if c >= NEAR}  # signed, as in the bands
    rows = [r for r in read_query(lake, "select sae, latent, factor, concept_rating, instruct_rating, hm from "
                                        f"steering where model = '{slug}'").to_pylist()
            if (r["sae"], r["latent"]) in near]
    lines = []
    for factor in sorted({r["factor"] for r in rows}):
        at = [r for r in rows if r["factor"] == factor]
        concept = np.array([r["concept_rating"] > 0 for r in at])
        instruct = np.array([r["instruct_rating"] > 0 for r in at])
        lines.append(f"| {slug} | {factor:g} | {concept.mean():.2f} | {instruct.mean():.2f} | "
                     f"{(concept & instruct).mean():.2f} | {np.mean([r['hm'] > 0 for r in at]):.2f} | "
                     f"{np.mean([r['hm'] for r in at]):.3f} |")
    return lines


def main() -> None:
    import numpy as np

    from sae_models.evals.config import SteeringConfig
    from sae_models.lm import load_lm
    from sae_models.toyworld.grammar import TOPICS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lake", nargs="?", type=Path, default=Path("lake"))
    lake = Lake(parser.parse_args().lake)
    settings = load_settings()
    cfg = SteeringConfig(**{**settings.steering.model_dump(), "n_concepts": len(TOPICS)})
    docs = [d for d in lake.read_split("lm_eval").to_pylist() if d["kind"] in ("story", "instruction")]
    topics, rng = list(TOPICS), np.random.default_rng(0)
    ceiling = ["| model | layer | direction | g_unsteered | g | g - g_unsteered [95%] | concept | instruct | "
               "median factor |", "|---|---|---|---|---|---|---|---|---|"]
    bands = ["| model | largest cosine with a topic's document direction | explained as a topic or sentiment: "
             "latents | g - g_unsteered [95%] | explained otherwise: latents | g - g_unsteered [95%] |",
             "|---|---|---|---|---|---|"]
    tradeoff = ["| model | factor | concept > 0 | instruct > 0 | both | HM > 0 | HM |", "|---|---|---|---|---|---|---|"]
    for entry in settings.registry:
        if entry.toy is None or entry.control_of is not None:
            continue
        lm = load_lm(str(lake.path("models", model=entry.slug)))
        ceiling += ceiling_rows(lm, entry.slug, docs, topics, cfg, rng)
        document, _ = topic_directions(residuals(lm, docs, entry.layer), docs, topics)["document"]
        cosines = latent_cosines(lake, entry.slug, document)
        bands += band_rows(lake, entry.slug, cosines, rng)
        tradeoff += tradeoff_rows(lake, entry.slug, cosines)
    print("The world's topic directions, steered at every layer (16 topics):", *ceiling, "",
          "The lake's steered SAE latents at the SAEs' layer, by closeness to a topic direction:", *bands, "",
          f"Their answers per factor, the latents with cosine >= {NEAR:g}:", *tradeoff, sep="\n")


if __name__ == "__main__":
    main()
