"""The random-weights control: each score of a trained model's dictionary beside the same dictionary
trained on the model's twin with random weights, and which score tells the two apart.

Heap et al. 2025 find that SAEs of a randomly initialised transformer score about as well on autointerp as
SAEs of the trained one. Per dictionary, the difference trained - twin of each score comes with a 95% BCa
bootstrap interval over the score's own units: the CONCEPT100 latents for mu, mu_balanced (the balanced
accuracy: 0.5 for any answer that ignores the windows, where mu's accuracy rewards answering "no") and
mu_simulation; the steered
concepts for g, for g - g_unsteered (what steering adds: an untrained LM writes text the judge rates 0 with or
without steering, so g alone measures the LM as much as the SAE) and for the concept rating alone; the chosen
set's concepts for g_dtc (resampled within each side); the world's concepts for concept recovery F1 (the same
concepts on both sides, resampled as pairs). The intervals condition on one twin draw, one SAE seed and one
judge run: they say how stable the score is over its units, not over those. Over a model's SAE pairs,
``separation`` asks how well each score tells trained from twin: how many pairs the trained SAE wins, with a
two-sided sign test, the mean paired difference with a bootstrap interval, and the AUROC (unpaired: the chance
that a trained SAE outscores a twin SAE, ties half; 0.5 cannot tell them apart, 0 or 1 separate perfectly).

Config, run, typed output: ``ControlConfig`` (which dictionaries the twins get) -> ``run_control`` ->
``ControlResult`` (a ``ControlContrast`` per dictionary and score, the ``control_contrast`` table; a
``ControlSeparation`` per model and score, ``control_separation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from sae_models.arrow import schema_of
from sae_models.stats import RESAMPLES, mean_difference_ci, mean_or_none

METRICS = ("mu", "mu_balanced", "mu_simulation", "g", "g_minus_unsteered", "concept_rating", "g_dtc", "concept_f1")
# Scores an untrained LM floors: the judge rates its text 0 for fluency whether or not it is steered, so a
# twin's harmonic means are 0 by construction and these scores cannot measure its SAE.
FLOORED = {"g", "g_minus_unsteered", "g_dtc"}
TRUTH = "concept_f1"  # the toy world's ground truth: what the other scores are measured against
PAIRED_UNITS = {TRUTH}  # the world's concepts: the same units on both sides
ALL_MODELS = "all models"
MIN_UNITS = 5  # fewer values on a side (or SAE pairs) give no interval: BCa on 2-4 values means nothing


@dataclass
class ControlContrast:
    """One row of ``control_contrast``: one score of a trained model's dictionary beside its twin's."""

    model: str  # the trained model
    control: str  # its random-weights twin
    sae: str
    architecture: str
    is_baseline: bool
    level: float | None
    sparsity_index: int | None
    l0_trained: float | None  # held-out L0 on each side: a fixed L1 coefficient need not give the same L0 on both
    l0_twin: float | None
    metric: str  # one of METRICS
    trained: float | None  # the score: the mean over its units
    twin: float | None
    difference: float | None  # trained - twin
    ci_low: float | None  # 95% BCa bootstrap over the units (null with fewer than MIN_UNITS on a side)
    ci_high: float | None
    n_trained: int  # units: latents, concepts
    n_twin: int
    paired: bool  # the same units on both sides, resampled as pairs


@dataclass
class ControlSeparation:
    """One row of ``control_separation``: how well one score tells a model's SAEs from its twin's."""

    model: str  # a trained model, or "all models"
    metric: str
    n_pairs: int  # SAEs (not baselines) of the trained model and the twin at the same variant, both scored
    trained: float | None  # the mean over those SAEs
    twin: float | None
    difference: float | None  # the mean paired difference trained - twin
    ci_low: float | None  # 95% BCa bootstrap over the SAE pairs (null with fewer than MIN_UNITS pairs)
    ci_high: float | None
    effect_size: float | None  # the mean paired difference over its standard deviation (Cohen's d_z)
    trained_higher: int  # pairs where the trained SAE scores higher
    twin_higher: int  # pairs where the twin's scores higher (the rest tie)
    sign_test_p: float | None  # two-sided exact binomial test of the wins against 1/2, ties left out
    auroc: float | None  # P(a trained SAE's score > a twin SAE's), ties half: 0.5 cannot tell them apart


CONTRAST_SCHEMA = schema_of(ControlContrast)
SEPARATION_SCHEMA = schema_of(ControlSeparation)



def contrast(pair: dict, metric: str, trained: Sequence[float], twin: Sequence[float], same_units: bool = False,
             resamples: int = RESAMPLES) -> ControlContrast:
    """One dictionary's ``metric`` on the trained model and on the twin; ``pair`` gives model, control, sae,
    architecture, is_baseline, level and sparsity_index; ``trained`` and ``twin`` are the units' values, the same
    units in the same order when ``same_units`` (then a metric of ``PAIRED_UNITS`` is resampled as pairs)."""
    paired = metric in PAIRED_UNITS and same_units
    a, b = mean_or_none(trained), mean_or_none(twin)
    enough = min(len(trained), len(twin)) >= MIN_UNITS
    low, high = mean_difference_ci(trained, twin, paired=paired, resamples=resamples) if enough else (None, None)
    return ControlContrast(**pair, metric=metric, trained=a, twin=b,
                           difference=a - b if a is not None and b is not None else None, ci_low=low, ci_high=high,
                           n_trained=len(trained), n_twin=len(twin), paired=paired)


def separation(model: str, metric: str, rows: Sequence[ControlContrast], resamples: int = RESAMPLES
               ) -> ControlSeparation:
    """How well ``metric`` separates the trained SAEs from their twins over ``rows`` (one per SAE pair)."""
    both = [r for r in rows if not r.is_baseline and r.trained is not None and r.twin is not None]
    a = np.array([r.trained for r in both], float)
    b = np.array([r.twin for r in both], float)
    diff = a - b
    low, high = mean_difference_ci(a, b, paired=True, resamples=resamples) if len(both) >= MIN_UNITS else (None, None)
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    auroc = float(stats.mannwhitneyu(a, b).statistic / (len(a) * len(b))) if len(both) else None
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    sign_p = float(stats.binomtest(wins, wins + losses).pvalue) if wins + losses else None
    return ControlSeparation(model, metric, len(both), mean_or_none(a), mean_or_none(b), mean_or_none(diff), low, high,
                             float(diff.mean() / sd) if sd > 0 else None, wins, losses, sign_p, auroc)


def ranked_separators(rows: Sequence[ControlSeparation]) -> list[ControlSeparation]:
    """The scores other than the ground truth and the floored ones, best separator first: by how one-sided the
    pairs are (|wins - losses| / pairs, either direction), then by how far the AUROC lies from 0.5."""
    candidates = [r for r in rows if r.metric != TRUTH and r.metric not in FLOORED and r.n_pairs
                  and r.auroc is not None]
    return sorted(candidates, key=lambda r: (-abs(r.trained_higher - r.twin_higher) / r.n_pairs,
                                             -abs(r.auroc - 0.5)))


def separations(rows: Sequence[ControlContrast], resamples: int = RESAMPLES) -> list[ControlSeparation]:
    """``separation`` per trained model and metric, then over all models."""
    models = sorted({r.model for r in rows})
    groups = [(m, [r for r in rows if r.model == m]) for m in models]
    if len(models) > 1:
        groups.append((ALL_MODELS, list(rows)))
    return [separation(model, metric, [r for r in group if r.metric == metric], resamples)
            for model, group in groups for metric in METRICS if any(r.metric == metric for r in group)]


@dataclass(frozen=True)
class ControlResult:
    """Every dictionary's contrasts (``rows``) and, per model and score, how well it separates (``summary``)."""

    rows: list[ControlContrast]
    summary: list[ControlSeparation]


# The fields of a contrast that name its dictionary pair (those before ``metric``).
PAIR_KEYS = ("model", "control", "sae", "architecture", "is_baseline", "level", "sparsity_index", "l0_trained",
             "l0_twin")


def run_control(units: Sequence[dict], resamples: int = RESAMPLES) -> ControlResult:
    """The control over ``units`` (sql/control_units.sql: per dictionary pair and metric, the pair's keys, the
    trained and twin units' values and whether they are the same units)."""
    rows = [contrast({k: u[k] for k in PAIR_KEYS}, u["metric"], u["trained"], u["twin"], u["same_units"],
                     resamples) for u in units]
    return ControlResult(rows, separations(rows, resamples))
