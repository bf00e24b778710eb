"""Steering utility g(SAE) (AxBench's protocol).

Config, run, typed output, like every evaluation here, in two runs, so a new judge re-scores stored
generations without generating again: ``SteeringConfig`` -> ``run_steering_generation`` ->
``GenerationResult`` (a ``GenerationRow`` per generation: the ``steering_generations`` table), then
``run_steering_rating`` -> ``RatingResult`` (a ``RatingRow`` per generation, ``steering``; a ``ConceptScore`` per
concept, ``steering_concepts``; the ``SteeringSummary``, ``steering_summary``).

- Intervention at the SAE's hook point, every position, prompt and generated tokens alike:
  h <- h + factor * m_f * d_f, with d_f the unit decoder direction and m_f the largest norm the latent's
  decoded contribution reaches on the activation corpus (max activation x ||W_dec[f]||: the max activation
  itself for the unit-norm decoders of every trained SAE here).
- Concepts: a seeded random ``n_concepts`` of the CONCEPT100 latents (all of them by default); a latent's
  concept text is its autointerp explanation. 10 instructions per concept (5 dev, 5 test), every factor, plus
  the unsteered generation (factor 0) of the same prompts as the baseline.
- Each row samples from its own stream, seeded by (model, SAE, latent, factor, instruction), so a row's text
  does not depend on batch size or neighbours (``sae_models.lm.generate``).
- Ratings 0, 1 or 2 for concept, instruction relevance and fluency; unparseable counts as 0. Per generation
  HM = 0 if any rating is 0, else 3 / (1/C + 1/I + 1/F). Per concept, alpha* = the factor with the best mean
  HM on the dev half (the smallest on ties); the concept's score is the test half's mean HM at alpha*;
  g = the mean over concepts.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sae_models.arrow import schema_of
from sae_models.evals.autointerp import concept_subset
from sae_models.evals.config import AutointerpConfig, SteeringConfig
from sae_models.evals.instructions import Instruction, instructions_for
from sae_models.judges import Judge, JudgeStats, usage_field
from sae_models.judges.prompts import RATINGS
from sae_models.progress import Progress
from sae_models.sae.sweep import SAEIdentity
from sae_models.stats import mean_or_none, t_half_width

UNSTEERED = 0.0


class SteeringInputError(ValueError):
    """Input that steering cannot use (a latent out of range or never active); names it."""


@dataclass(frozen=True)
class SteeringConcept:
    """A steered latent and m_f, the size of its steering vector at factor 1."""

    latent: int
    magnitude: float


@dataclass(frozen=True)
class PlannedRow:
    latent: int
    factor: float
    instruction: Instruction
    split: str
    seed: int


@dataclass
class GenerationRow:
    """One row of ``steering_generations``."""

    latent: int
    magnitude: float  # m_f: the steering vector is factor x m_f x d_f
    factor: float
    instruction_id: str
    split: str  # dev | test
    instruction: str  # what the judge is shown
    prompt: str  # what the model continued (the instruction in the model's format)
    generation: str
    n_tokens: int
    seed: int


@dataclass
class RatingRow:
    """One row of ``steering``: the judge's ratings of one generation."""

    latent: int
    factor: float
    instruction_id: str
    split: str
    concept_rating: int
    instruct_rating: int
    fluency_rating: int
    hm: float
    unparseable: int  # ratings that did not follow the format (counted as 0)


@dataclass
class ConceptScore:
    """One row of ``steering_concepts``: a latent's best factor on dev and its test score there."""

    latent: int
    concept: str
    magnitude: float  # m_f
    best_factor: float  # alpha*, chosen on the dev half
    dev_hm: float
    dev_spread: float  # best minus worst dev mean over the factors: 0 when no factor differs (alpha* by the tie rule)
    test_hm: float  # the concept's steering score
    test_concept: float  # mean ratings of the test half at alpha*
    test_instruct: float
    test_fluency: float
    unsteered_test_hm: float  # the same test prompts, unsteered
    best_test_factor: float  # the factor a choice on the test half itself would take (optimistic)
    best_test_hm: float


@dataclass
class SteeringSummary:
    """One row of ``steering_summary``: g and its baselines for one SAE."""

    judge: str
    judge_model: str
    identity: SAEIdentity
    g: float | None  # mean over concepts of the test HM at the dev-chosen factor
    g_ci: float | None  # 95% Student-t half-width over concepts
    g_unsteered: float | None  # the same prompts without steering: what doing nothing scores
    g_chosen_on_test: float | None  # alpha* chosen on the test half itself: an optimistic upper bound
    concept: float | None  # mean ratings at alpha* on the test half
    instruct: float | None
    fluency: float | None
    n_concepts: int
    n_unexplained: int  # concepts left out because autointerp gave them no explanation
    n_generations: int
    mean_tokens: float
    unparseable: int
    usage: JudgeStats = usage_field()


GENERATIONS_SCHEMA = schema_of(GenerationRow)
STEERING_SCHEMA = schema_of(RatingRow)
CONCEPTS_SCHEMA = schema_of(ConceptScore)
SUMMARY_SCHEMA = schema_of(SteeringSummary)


def concept_magnitudes(sae, latents: Sequence[int], max_codes: Sequence[float]) -> list[SteeringConcept]:
    """m_f per latent: its max code on the activation corpus times its decoder row's norm. A latent out of
    range or never active is one error naming it."""
    import torch

    d_sae = sae.W_dec.shape[0]
    bad = [int(f) for f in latents if not 0 <= int(f) < d_sae]
    if bad:
        raise SteeringInputError(f"latents {bad} are out of range: the SAE has {d_sae} latents")
    with torch.no_grad():
        norms = sae.W_dec[torch.as_tensor(list(latents), dtype=torch.long)].norm(dim=-1).tolist()
    out = [SteeringConcept(int(f), float(m) * n) for f, m, n in zip(latents, max_codes, norms, strict=True)]
    dead = [c.latent for c in out if not (math.isfinite(c.magnitude) and c.magnitude > 0)]
    if dead:
        raise SteeringInputError(f"latents {dead} have m_f = 0 (never active on the activation corpus, or a zero "
                                 "decoder row): a zero steering vector cannot steer")
    return out


def steering_concepts(sae, examples: pa.Table, autointerp: AutointerpConfig, n: int, seed: int
                      ) -> list[SteeringConcept]:
    """A seeded random ``n`` of the CONCEPT100 latents of the ``latent_examples`` table (the scored latents,
    whatever the judge: so generations do not depend on it), with m_f from their top window's activation.
    Random, not the first n: a baseline's latent order means something (PCA's is by variance)."""
    import pyarrow.compute as pc

    top = examples.filter(pc.and_(pc.equal(examples.column("kind"), "top"), pc.equal(examples.column("rank"), 0)))
    max_code = dict(zip(top.column("latent").to_pylist(), top.column("score").to_pylist(), strict=True))
    concept100 = concept_subset(np.unique(examples.column("latent").to_numpy()), autointerp.n_concept,
                                autointerp.seed)
    latents = concept_subset(concept100, n, seed).tolist()
    return concept_magnitudes(sae, latents, [max_code.get(f, 0.0) for f in latents])


def concepts_of(generations: Sequence[GenerationRow]) -> list[SteeringConcept]:
    """The steered concepts of stored generations, in latent order."""
    return sorted({SteeringConcept(g.latent, g.magnitude) for g in generations}, key=lambda c: c.latent)


def plan_steering(concepts: Sequence[SteeringConcept], pool: Sequence[Instruction], cfg: SteeringConfig,
                  seed_key: Callable[..., int]) -> list[PlannedRow]:
    """Every (concept, instruction, factor) row, the unsteered factor 0 included. ``seed_key(latent, factor,
    instruction_id)`` gives a row its sampling seed (``row_seed`` over the model and SAE as well)."""
    rows = []
    for concept in concepts:
        chosen = instructions_for(concept.latent, list(pool), cfg.instructions_per_concept, cfg.seed)
        for j, ins in enumerate(chosen):
            split = "dev" if j < cfg.dev_instructions else "test"
            for factor in (UNSTEERED, *cfg.factors):
                rows.append(PlannedRow(concept.latent, factor, ins, split, seed_key(concept.latent, factor, ins.id)))
    return rows


def generate_steering(lm, sae, concepts: Sequence[SteeringConcept], rows: Sequence[PlannedRow], layer: int,
                      site: str, cfg: SteeringConfig, progress: Callable[[str], None] | None = None
                      ) -> list[GenerationRow]:
    """Generate every planned row, ``cfg.batch_size`` rows (each with its own steering vector) per ``generate``
    call; rows are batched by prompt length, which changes no result (each row samples on its own stream)."""
    import torch

    from sae_models.lm import hook_module
    from sae_models.lm.generate import generate_batch
    from sae_models.lm.intervene import add_vectors

    report = Progress(progress)
    magnitude = {c.latent: c.magnitude for c in concepts}
    directions = sae.decoder_directions().detach().to(lm.device)
    module = hook_module(lm.model, layer, site)
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i].instruction.prompt), i))
    out: list[GenerationRow | None] = [None] * len(rows)
    for start in range(0, len(order), cfg.batch_size):
        batch = [rows[i] for i in order[start:start + cfg.batch_size]]
        scale = torch.tensor([r.factor * magnitude[r.latent] for r in batch], device=lm.device)
        vectors = scale[:, None] * directions[[r.latent for r in batch]]
        done = generate_batch(lm, [r.instruction.prompt for r in batch], [r.seed for r in batch],
                              cfg.max_new_tokens, cfg.temperature, module, add_vectors(vectors))
        for i, r, g in zip(order[start:start + cfg.batch_size], batch, done, strict=True):
            ins = r.instruction
            out[i] = GenerationRow(r.latent, magnitude[r.latent], r.factor, ins.id, r.split, ins.text, ins.prompt,
                                   g.text, g.n_tokens, r.seed)
        report(f"steering: {min(start + cfg.batch_size, len(rows))}/{len(rows)} generations")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class GenerationSummary:
    """What one SAE's generation run did, for its log and metadata."""

    concepts: int
    tokens: int
    seconds: float


@dataclass(frozen=True)
class GenerationResult:
    """One SAE's steered generations (table ``steering_generations``)."""

    rows: list[GenerationRow]
    summary: GenerationSummary


def run_steering_generation(lm, sae, concepts: Sequence[SteeringConcept], pool: Sequence[Instruction], layer: int,
                            site: str, cfg: SteeringConfig, seed_key: Callable[..., int],
                            progress: Callable[[str], None] | None = None) -> GenerationResult:
    """The first steering run of an SAE: plan every (concept, instruction, factor) row and generate it."""
    rows = plan_steering(concepts, pool, cfg, seed_key)
    start = time.perf_counter()
    generations = generate_steering(lm, sae, concepts, rows, layer, site, cfg, progress)
    summary = GenerationSummary(len(concepts), sum(g.n_tokens for g in generations), time.perf_counter() - start)
    return GenerationResult(generations, summary)


def harmonic_mean(ratings: Sequence[int]) -> float:
    """AxBench's per-generation score: 0 if any rating is 0, else the harmonic mean."""
    return 0.0 if min(ratings) <= 0 else len(ratings) / sum(1 / r for r in ratings)


def rate_steering(generations: Sequence[GenerationRow], concept_text: dict[int, str], judge: Judge
                  ) -> list[RatingRow]:
    """The judge's three ratings of every generation whose latent has a concept text."""
    rows = [g for g in generations if concept_text.get(g.latent)]
    concepts = [concept_text[g.latent] for g in rows]
    instructions, texts = [g.instruction for g in rows], [g.generation for g in rows]
    ratings = {kind: judge.rate(kind, concepts, instructions, texts) for kind in RATINGS}
    out = []
    for j, g in enumerate(rows):
        given = [ratings[kind][j] for kind in RATINGS]
        c, i, f = (r if r is not None else 0 for r in given)
        out.append(RatingRow(g.latent, g.factor, g.instruction_id, g.split, c, i, f, harmonic_mean((c, i, f)),
                             sum(r is None for r in given)))
    return out


def _best(means: dict[float, float]) -> float:
    """The factor with the highest mean, the smallest one on ties."""
    return max(sorted(means), key=lambda f: (means[f], -f))


def _means(rows: Sequence[RatingRow], attr: str = "hm") -> dict[float, float]:
    by: dict[float, list[float]] = defaultdict(list)
    for r in rows:
        by[r.factor].append(getattr(r, attr))
    return {f: float(np.mean(v)) for f, v in by.items()}


def score_concepts(ratings: Sequence[RatingRow], concepts: Sequence[SteeringConcept], concept_text: dict[int, str]
                   ) -> list[ConceptScore]:
    """Per rated concept: alpha* on dev (factor 0 excluded), the test score there, and the baselines."""
    by_latent: dict[int, list[RatingRow]] = defaultdict(list)
    for r in ratings:
        by_latent[r.latent].append(r)
    out = []
    for c in concepts:
        rows = by_latent.get(c.latent)
        if not rows:
            continue
        dev = [r for r in rows if r.split == "dev" and r.factor != UNSTEERED]
        test = [r for r in rows if r.split == "test" and r.factor != UNSTEERED]
        best, dev_means, test_means = _best(_means(dev)), _means(dev), _means(test)
        at = [r for r in test if r.factor == best]
        best_test = _best(test_means)
        out.append(ConceptScore(
            c.latent, concept_text[c.latent], c.magnitude, best, dev_means[best],
            dev_means[best] - min(dev_means.values()), test_means[best],
            *(float(np.mean([getattr(r, f"{k}_rating") for r in at])) for k in ("concept", "instruct", "fluency")),
            _means([r for r in rows if r.split == "test" and r.factor == UNSTEERED])[UNSTEERED],
            best_test, test_means[best_test]))
    return out



def summarize(scores: Sequence[ConceptScore], ratings: Sequence[RatingRow], generations: Sequence[GenerationRow],
              n_concepts: int, judge: Judge, sae: SAEIdentity) -> SteeringSummary:
    """g and its companions for the SAE ``sae``."""
    test = [s.test_hm for s in scores]
    se = float(np.std(test, ddof=1) / np.sqrt(len(test))) if len(test) > 1 else None
    return SteeringSummary(
        judge=judge.name, judge_model=judge.backend.model, identity=sae,
        g=mean_or_none(test), g_ci=t_half_width(se, len(test)) if se is not None else None,
        g_unsteered=mean_or_none([s.unsteered_test_hm for s in scores]),
        g_chosen_on_test=mean_or_none([s.best_test_hm for s in scores]),
        concept=mean_or_none([s.test_concept for s in scores]),
        instruct=mean_or_none([s.test_instruct for s in scores]),
        fluency=mean_or_none([s.test_fluency for s in scores]),
        n_concepts=len(scores), n_unexplained=n_concepts - len(scores), n_generations=len(generations),
        mean_tokens=float(np.mean([g.n_tokens for g in generations])) if generations else 0.0,
        unparseable=sum(r.unparseable for r in ratings),
        usage=judge.stats.snapshot(),
    )


@dataclass(frozen=True)
class RatingResult:
    """One SAE's rated steering: a row per generation (``steering``), per concept (``concepts``, the
    ``steering_concepts`` table) and the SAE's g (``steering_summary``)."""

    rows: list[RatingRow]
    concepts: list[ConceptScore]
    summary: SteeringSummary


def run_steering_rating(generations: Sequence[GenerationRow], explanations: dict[int, str], judge: Judge,
                        sae: SAEIdentity) -> RatingResult:
    """The second steering run of the SAE ``sae``: rate its stored generations, each concept by its latent's
    explanation (a latent without one is left out and counted), choose alpha* on dev, score on test."""
    concepts = concepts_of(generations)
    text = {c.latent: e for c in concepts if (e := explanations.get(c.latent))}
    ratings = rate_steering(generations, text, judge)
    scores = score_concepts(ratings, concepts, text)
    return RatingResult(ratings, scores, summarize(scores, ratings, generations, len(concepts), judge, sae))


def by_factor(ratings: Sequence[RatingRow]) -> list[dict]:
    """Mean HM and ratings per factor (0 = unsteered), over every concept and instruction."""
    out = []
    for factor in sorted({r.factor for r in ratings}):
        rows = [r for r in ratings if r.factor == factor]
        out.append({"factor": factor, "hm": float(np.mean([r.hm for r in rows])),
                     **{k: float(np.mean([getattr(r, f"{k}_rating") for r in rows]))
                        for k in ("concept", "instruct", "fluency")}, "n": len(rows)})
    return out


def from_rows(table: pa.Table, row_type: type) -> list:
    """Typed rows back from a stored table."""
    return [row_type(**r) for r in table.to_pylist()]
