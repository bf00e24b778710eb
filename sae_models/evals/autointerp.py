"""Interpretability scores per latent: SAEBench detection and the [C23] simulation score.

Config, run, typed output, like every evaluation here, in two runs: ``AutointerpConfig`` ->
``run_latent_examples`` -> ``ExamplesResult`` (the windows of the sampled latents, the ``latent_examples`` table),
then ``run_autointerp`` -> ``AutointerpResult`` (a ``LatentScore`` row per latent, ``autointerp``; an
``AutointerpSummary`` per SAE, ``interpretability``). The judge is any ``sae_models.judges.Judge``.

- Detection [SB]: an explanation from 10 top + 5 importance-weighted windows (tokens above
  tau = threshold x the latent's max marked); then, given only the explanation, the judge picks which of 14
  shuffled windows (2 held-out top, 2 importance-weighted, 10 random) activate. Score = accuracy, where a
  window activates if its max activation exceeds tau; as in SAEBench, random windows count as non-activating
  (``random_negative``), so a latent that fires everywhere cannot score by predicting "all". An unparseable
  answer scores 0. Beside it, from the same answers: the variant where every window's truth is its
  own activation (``detection_by_activation``), the balanced accuracy (mean of the hit rates on activating
  and on non-activating windows: 0.5 for any answer that ignores the windows), and per latent the counts
  that give the trivial baselines (answering "none" scores the share of non-activating windows).
- Simulation [C23]: an explanation from 5 top windows; the judge predicts per-token activations (0..10) on
  5 held-out top and 5 random windows (the random ones drawn at random, all 10 shown in a seeded random
  order); score = Pearson correlation with the true activations.
"""

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from scipy.stats import pearsonr

from sae_models.arrow import schema_of
from sae_models.evals.config import AutointerpConfig
from sae_models.evals.examples import PAD_TOKEN, LatentExamples, WindowSet, gather_sae_examples, to_arrow
from sae_models.judges import Judge, JudgeStats, Window, usage_field
from sae_models.sae.sweep import SAEIdentity
from sae_models.stats import mean_or_none, spearman, t_half_width


@dataclass
class LatentScore:
    """One row of the ``autointerp`` table."""

    latent: int = field(metadata={"arrow": pa.int32()})
    explanation: str
    detection_score: float
    detection_balanced: float  # balanced accuracy of the same answer
    detection_by_activation: float  # truth = the window's own activation, random windows included
    detect_windows: int = field(metadata={"arrow": pa.int32()})
    detect_positive: int = field(metadata={"arrow": pa.int32()})  # activating under random_negative
    detect_active: int = field(metadata={"arrow": pa.int32()})  # activating by their own activation
    simulation_explanation: str
    simulation_score: float
    unparseable: int = field(metadata={"arrow": pa.int32()})  # judge answers that did not follow the format
    concept100: bool = False  # in the CONCEPT100 subset whose mean is mu
    concept_purity: float | None = None  # toy world: ground-truth purity on held-out tokens
    purity_feature: str | None = None


@dataclass
class AutointerpSummary:
    """One row of the ``interpretability`` table: mu and its companions for one SAE, and the judge's usage."""

    judge: str
    judge_model: str
    identity: SAEIdentity
    mu: float | None  # mean detection score over CONCEPT100
    mu_always_no: float | None  # what answering "none" every time would score (mean over CONCEPT100)
    mu_always_yes: float | None  # what answering "all" every time would score
    mu_balanced: float | None  # mean balanced accuracy (0.5 for any trivial answer)
    mu_by_activation: float | None  # the variant: random windows judged by their own activation
    mu_by_activation_always_no: float | None
    mu_simulation: float | None  # mean [C23] simulation score over CONCEPT100
    mu_all: float | None  # mean detection score over every scored latent
    n_scored: int
    n_concept: int
    n_too_few: int  # sampled latents that fired in too few documents to be scored
    purity_spearman: float | None  # toy world: Spearman(detection score, ground-truth purity)
    usage: JudgeStats = usage_field()


AUTOINTERP_SCHEMA = schema_of(LatentScore)
INTERPRETABILITY_SCHEMA = schema_of(AutointerpSummary)


class TokenText:
    """Token ids -> display strings that concatenate back into text, memoised per id.

    Word-level tokenizers decode single tokens without their separating space; for those each token gets a
    leading space so windows read like text either way."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._cache: dict[int, str] = {}
        a, b = (tokenizer.encode("a b c", add_special_tokens=False) + [0, 0])[:2]
        self._space = " " if tokenizer.decode([a, b]) != tokenizer.decode([a]) + tokenizer.decode([b]) else ""

    def __call__(self, ids: Sequence[int]) -> list[str]:
        out = []
        for i in ids:
            if i not in self._cache:
                self._cache[i] = self._space + self.tokenizer.decode([int(i)])
            out.append(self._cache[i])
        return out


def too_few_activations(examples: LatentExamples, cfg: AutointerpConfig) -> np.ndarray:
    """Latents [L] bool that fired in too few documents to fill the explanation and held-out top windows."""
    need = max(cfg.explain_top + cfg.score_top, cfg.sim_explain_top + cfg.sim_top)
    return (examples.top.doc >= 0).sum(1) < need


def scored_latents(live: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The latents autointerp scores: a fixed random sample of ``n`` live latents (all when fewer), sorted."""
    return np.sort(np.random.default_rng(seed).choice(live, size=min(n, len(live)), replace=False))


@dataclass(frozen=True)
class ExamplesSummary:
    """How one SAE's window gathering went: latents live, sampled and dropped for too few activations."""

    live: int
    sampled: int
    too_few: int
    seconds: float


@dataclass(frozen=True)
class ExamplesResult:
    """One SAE's windows per sampled latent with enough activations (table ``latent_examples``)."""

    rows: pa.Table
    summary: ExamplesSummary


def run_latent_examples(sae, rows: Iterable, live: np.ndarray, cfg: AutointerpConfig, device: str = "cpu"
                        ) -> ExamplesResult:
    """The first autointerp run of an SAE: sample ``cfg.n_latents`` of its ``live`` latents, gather their top,
    importance-weighted and random windows over the activation ``rows`` ((row, activation) pairs, as
    ``gather_sae_examples`` reads them), and keep the latents with enough windows to explain and score."""
    latents = scored_latents(live, cfg.n_latents, cfg.seed)
    start = time.perf_counter()
    examples = gather_sae_examples(sae, rows, latents, cfg, device=device)
    seconds = time.perf_counter() - start
    few = too_few_activations(examples, cfg)
    return ExamplesResult(to_arrow(examples, keep=~few),
                          ExamplesSummary(len(live), len(latents), int(few.sum()), seconds))


def concept_subset(latents: np.ndarray, n: int, seed: int) -> np.ndarray:
    """CONCEPT100: a fixed random subset of ``n`` of the scored latents (all when fewer), sorted."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(latents, size=min(n, len(latents)), replace=False))


@dataclass
class LatentPlan:
    """Windows of one latent for each judge call, and the truth to score against."""

    tau: float
    explain: list[Window]
    explain_slots: list[tuple[str, int]]  # each explanation window's kind (top, importance) and slot
    detect: list[Window]
    detect_truth: np.ndarray  # SAEBench's: random windows negative (unless random_negative is off)
    detect_active: np.ndarray  # each window's own max activation > tau
    detect_slots: list[tuple[str, int]]  # each detection window's kind (top, importance, random) and slot
    sim_explain: list[Window]
    sim: list[Window]
    sim_truth: list[np.ndarray]


def _windows(ws: WindowSet, latent: int, slots: Sequence[int], text: Callable, with_acts: bool) -> list[Window]:
    out = []
    for s in slots:
        keep = ws.tokens[latent, s] != PAD_TOKEN
        acts = tuple(ws.acts[latent, s][keep].tolist()) if with_acts else ()
        out.append(Window(tuple(text(ws.tokens[latent, s][keep].tolist())), acts))
    return out


def _acts(ws: WindowSet, latent: int, slots: Sequence[int]) -> list[np.ndarray]:
    return [ws.acts[latent, s][ws.tokens[latent, s] != PAD_TOKEN] for s in slots]


def plan_latent(ex: LatentExamples, i: int, text: Callable, cfg: AutointerpConfig) -> LatentPlan:
    """The windows of latent ``i`` for each call: SAEBench splits the top and importance-weighted windows at
    random (seeded per latent) between explaining and scoring, and shuffles the scoring windows."""
    rng = np.random.default_rng([cfg.seed, int(ex.latents[i])])
    top, imp, rnd = ex.top.filled(i), ex.importance.filled(i), ex.random.filled(i)
    tau = cfg.threshold * float(ex.top.score[i, top[0]])
    held = rng.choice(len(top), size=cfg.score_top, replace=False)
    explain_top = [s for j, s in enumerate(top) if j not in set(held.tolist())][:cfg.explain_top]
    imp = imp[rng.permutation(len(imp))]
    imp_explain = sorted(imp[:cfg.explain_importance], key=lambda s: -ex.importance.score[i, s])
    scoring = ([(ex.top, s) for s in top[held]] + [(ex.importance, s) for s in imp[cfg.explain_importance:]
                                                    [:cfg.score_importance]]
               + [(ex.random, s) for s in rnd[:cfg.score_random]])
    scoring = [scoring[j] for j in rng.permutation(len(scoring))]
    # [C23]: explain from every other top window, simulate the ones in between plus random windows drawn at
    # random, all shown in a seeded random order.
    sim_explain, sim_top = top[0::2][:cfg.sim_explain_top], top[1::2][:cfg.sim_top]
    sim_rnd = rng.choice(rnd, size=min(cfg.sim_random, len(rnd)), replace=False)
    sim = [(ex.top, s) for s in sim_top] + [(ex.random, s) for s in sim_rnd]
    sim = [sim[j] for j in rng.permutation(len(sim))]
    active = np.array([ws.score[i, s] > tau for ws, s in scoring])
    kind_of = {id(ex.top): "top", id(ex.importance): "importance", id(ex.random): "random"}
    return LatentPlan(
        tau=tau,
        explain=(_windows(ex.top, i, explain_top, text, True) + _windows(ex.importance, i, imp_explain, text, True)),
        explain_slots=[("top", int(s)) for s in explain_top] + [("importance", int(s)) for s in imp_explain],
        detect=[_windows(ws, i, [s], text, False)[0] for ws, s in scoring],
        detect_truth=active & ~np.array([cfg.random_negative and ws is ex.random for ws, _ in scoring]),
        detect_active=active,
        detect_slots=[(kind_of[id(ws)], int(s)) for ws, s in scoring],
        sim_explain=_windows(ex.top, i, sim_explain, text, True),
        sim=[_windows(ws, i, [s], text, False)[0] for ws, s in sim],
        sim_truth=[_acts(ws, i, [s])[0] for ws, s in sim],
    )


def _pearson(predicted: list[list[float]], truth: list[np.ndarray]) -> float:
    p, t = np.concatenate([np.asarray(x, float) for x in predicted]), np.concatenate(truth).astype(float)
    if p.std() == 0 or t.std() == 0:
        return 0.0
    return float(pearsonr(p, t).statistic)


def balanced_accuracy(picked: np.ndarray, truth: np.ndarray) -> float:
    """Mean of the hit rates on the activating and the non-activating windows (the classes present): 0.5 for
    "all", "none" or any answer that ignores the windows."""
    return float(np.mean([(picked[truth == c] == c).mean() for c in (True, False) if (truth == c).any()]))


def _detection(pick: list[bool] | None, plan: LatentPlan) -> dict:
    """The detection columns of one latent; an unparseable answer scores 0 on every measure."""
    scores = {"detection_score": 0.0, "detection_balanced": 0.0, "detection_by_activation": 0.0}
    if pick is not None:
        picked = np.array(pick)
        scores = {"detection_score": float((picked == plan.detect_truth).mean()),
                  "detection_balanced": balanced_accuracy(picked, plan.detect_truth),
                  "detection_by_activation": float((picked == plan.detect_active).mean())}
    return scores | {"detect_windows": len(plan.detect), "detect_positive": int(plan.detect_truth.sum()),
                     "detect_active": int(plan.detect_active.sum())}


def _failures(explanation: str | None, answer) -> int:
    """Unparseable answers in one explain-then-score chain (no scoring call without an explanation)."""
    return 1 if explanation is None or answer is None else 0


def score_latents(examples: LatentExamples, text: Callable[[Sequence[int]], list[str]], judge: Judge,
                  cfg: AutointerpConfig = AutointerpConfig()) -> list[LatentScore]:
    """Detection and simulation scores for every latent of ``examples`` (which must all have enough
    activations, see ``too_few_activations``). Judge calls go out task by task, in batches."""
    plans = [plan_latent(examples, i, text, cfg) for i in range(len(examples.latents))]
    explanations = judge.explain([p.explain for p in plans], [p.tau for p in plans])
    sim_explanations = judge.explain([p.sim_explain for p in plans], [p.tau for p in plans])
    usable = [i for i, e in enumerate(explanations) if e is not None]
    picks = dict(zip(usable, judge.detect([explanations[i] for i in usable], [plans[i].detect for i in usable]),
                     strict=True))
    sim_usable = [i for i, e in enumerate(sim_explanations) if e is not None]
    sims = dict(zip(sim_usable, judge.simulate([sim_explanations[i] for i in sim_usable],
                                               [plans[i].sim for i in sim_usable]), strict=True))
    rows = []
    for i, plan in enumerate(plans):
        pick, sim = picks.get(i), sims.get(i)
        rows.append(LatentScore(
            latent=int(examples.latents[i]),
            explanation=explanations[i] or "",
            **_detection(pick, plan),
            simulation_explanation=sim_explanations[i] or "",
            simulation_score=_pearson(sim, plan.sim_truth) if sim is not None else 0.0,
            unparseable=_failures(explanations[i], pick) + _failures(sim_explanations[i], sim),
        ))
    return rows


def mark_concept_and_purity(rows: list[LatentScore], cfg: AutointerpConfig, purity: dict[int, tuple[float, str]]
                            ) -> list[LatentScore]:
    """Flag the CONCEPT100 rows and attach each latent's ground-truth purity (toy world; empty elsewhere)."""
    concept = set(concept_subset(np.array([r.latent for r in rows]), cfg.n_concept, cfg.seed).tolist())
    for r in rows:
        r.concept100 = r.latent in concept
        r.concept_purity, r.purity_feature = purity.get(r.latent, (None, None))
    return rows



def summarize(rows: list[LatentScore], n_sampled: int, judge: Judge, sae: SAEIdentity) -> AutointerpSummary:
    """mu and its companions for the SAE ``sae``."""
    def column(name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in rows], float)

    det, windows = column("detection_score"), column("detect_windows")
    concept = np.array([r.concept100 for r in rows], bool)
    purity = [r.concept_purity for r in rows]
    has_purity = bool(rows) and all(p is not None for p in purity)
    no = 1 - column("detect_positive") / np.maximum(windows, 1)
    return AutointerpSummary(
        judge=judge.name, judge_model=judge.backend.model, identity=sae,
        mu=mean_or_none(det[concept]), mu_always_no=mean_or_none(no[concept]),
        mu_always_yes=mean_or_none(1 - no[concept]),
        mu_balanced=mean_or_none(column("detection_balanced")[concept]),
        mu_by_activation=mean_or_none(column("detection_by_activation")[concept]),
        mu_by_activation_always_no=mean_or_none(1 - (column("detect_active") / np.maximum(windows, 1))[concept]),
        mu_simulation=mean_or_none(column("simulation_score")[concept]), mu_all=mean_or_none(det),
        n_scored=len(rows), n_concept=int(concept.sum()), n_too_few=n_sampled - len(rows),
        purity_spearman=spearman(det, purity) if has_purity else None,
        usage=judge.stats.snapshot(),
    )


@dataclass(frozen=True)
class AutointerpResult:
    """One SAE's autointerp: a row per scored latent (table ``autointerp``) and the SAE's mu and companions
    (table ``interpretability``)."""

    rows: list[LatentScore]
    summary: AutointerpSummary


def run_autointerp(examples: LatentExamples, text: Callable[[Sequence[int]], list[str]], judge: Judge,
                   cfg: AutointerpConfig, purity: dict[int, tuple[float, str]], n_sampled: int,
                   sae: SAEIdentity) -> AutointerpResult:
    """The autointerp of the SAE ``sae``: score every latent of ``examples``, mark the CONCEPT100 subset and
    each latent's ground-truth ``purity`` (empty off the toy world), summarize; ``n_sampled`` latents were drawn,
    the ones missing from ``examples`` had too few activations. A ``JudgeError`` leaves the judge's cache
    holding every answer it got."""
    rows = mark_concept_and_purity(score_latents(examples, text, judge, cfg), cfg, purity)
    return AutointerpResult(rows, summarize(rows, n_sampled, judge, sae))


def add_intervals(rows: list[dict], scores: tuple[str, ...] = ("detection", "simulation")) -> list[dict]:
    """[C23] Figure 2 rows (per model and dictionary kind: ``n``, ``<score>`` and ``<score>_se``) with the 95%
    Student-t half-width ``<score>_ci``. The latents are taken as independent."""
    for row in rows:
        for score in scores:
            row[f"{score}_ci"] = t_half_width(row[f"{score}_se"], row["n"])
    return rows


# The judge's own word lists define these features (a topic's words, a sentiment's, the determiners...), so a
# correlation over them is partly circular; word identities are what the windows show; the remaining roles
# depend on a word's place in the sentence, which no word list gives away.
LOOKUP_ROLES = ("role:determiner", "role:preposition", "role:name", "role:punctuation")


def purity_stratum(feature: str) -> str:
    """"lookup", "word" or "position": how a latent's best ground-truth feature relates to the judge."""
    if feature.startswith(("topic:", "sentiment:")) or feature in LOOKUP_ROLES:
        return "lookup"
    return "word" if feature.startswith("word:") else "position"


def purity_correlation_by_model(models: Sequence[str], detection: Sequence[float], purity: Sequence[float],
                                features: Sequence[str]) -> dict[str, float | None]:
    """Toy world truth check: per model, Spearman of detection score against ground-truth purity over all
    latents (``<model>``) and per stratum of the best feature (``<model>/<stratum>``, see ``purity_stratum``)."""
    models, strata = np.asarray(models), np.array([purity_stratum(f) for f in features])
    det, pur = np.asarray(detection, float), np.asarray(purity, float)
    out = {}
    for m in sorted(set(models.tolist())):
        out[m] = spearman(det[models == m], pur[models == m])
        for stratum in ("lookup", "word", "position"):
            keep = (models == m) & (strata == stratum)
            out[f"{m}/{stratum}"] = spearman(det[keep], pur[keep]) if keep.sum() >= 10 else None
    return out
