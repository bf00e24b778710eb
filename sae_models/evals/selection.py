"""Feature selection by Delta Token Confidence, and the output-score baseline.

The candidate pool is the SAE's steered CONCEPT100 latents, whose steering scores exist. Candidate sets rank
the pool by DeltaC in two directions, UP (most positive first) and DOWN (most negative first): the top K for
K = 1..max_k, and the tails beyond the quantiles q (UP: DeltaC >= its q quantile over the pool; DOWN, mirrored:
DeltaC <= its 1 - q quantile). A set's score on either half is the mean, over its latents, of the concept's
steering score at its dev-chosen factor.

The set is chosen on the dev half and reported on the test half: g_dtc. [W25] chose on the outcome it
reported; that optimistic variant is g_dtc_chosen_on_test, beside it. The output-score baseline takes the
same number of latents, the top by S_out: g_out. The gain L = (g_dtc - g) / g in percent.

Choosing the best of several sets on dev gains by itself when a concept that steers well on dev also does on
test, whatever ranks the sets. g_random_rank is that control: the same candidate sets and the same dev
choice with DeltaC replaced by a random order of the pool, scored on test, averaged over seeded draws. What
DTC adds is g_dtc - g_random_rank, not g_dtc - g.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sae_models.arrow import schema_of
from sae_models.evals.config import SelectionConfig
from sae_models.sae.sweep import SAEIdentity
from sae_models.stats import mean_or_none


@dataclass(frozen=True)
class PoolLatent:
    """A steered concept with what selection reads of it."""

    latent: int
    delta_c: float  # DeltaC_k, k = ``rank_k``
    output_score: float  # S_out
    dev_hm: float  # the concept's dev score at its dev-chosen factor
    test_hm: float  # and its test score there


@dataclass(frozen=True)
class CandidateSet:
    name: str  # "up-top3", "down-q0.90"
    direction: str  # "up" or "down"
    latents: tuple[int, ...]
    dev: float  # a candidate set is never empty, so its means are never None
    test: float


@dataclass
class SelectionSummary:
    """One row of ``selection``: g before and after selecting features, for one SAE."""

    identity: SAEIdentity
    g: float | None  # every pool latent: the steering utility of ``steering_summary``
    g_out: float | None  # the top latents by S_out, as many as the chosen DTC set holds
    g_dtc: float | None  # the DTC set chosen on the dev half, scored on the test half
    g_dtc_chosen_on_test: float | None  # the set chosen on the test half itself ([W25]'s way): optimistic
    g_random_rank: float | None  # the control: the same dev choice with a random order for DeltaC (module doc)
    gain: float | None  # L = (g_dtc - g) / g, percent
    gain_out: float | None  # (g_out - g) / g, percent
    chosen_set: str | None
    chosen_latents: list[int]
    size: int
    direction: str | None
    chosen_on_test_set: str | None
    n_pool: int
    n_candidates: int


SELECTION_SCHEMA = schema_of(SelectionSummary)


def candidate_sets(pool: Sequence[PoolLatent], cfg: SelectionConfig) -> list[CandidateSet]:
    """Every distinct candidate set of [W25] over ``pool``, top-K sets first; a set equal to an earlier one
    is left out."""
    ranked = {"up": sorted(pool, key=lambda p: (-p.delta_c, p.latent)),
              "down": sorted(pool, key=lambda p: (p.delta_c, p.latent))}
    values = np.array([p.delta_c for p in pool])
    rules: list[tuple[str, str, list[PoolLatent]]] = []
    for direction, order in ranked.items():
        rules += [(f"{direction}-top{k}", direction, order[:k]) for k in range(1, min(cfg.max_k, len(pool)) + 1)]
    for q in cfg.quantiles:
        up, down = np.quantile(values, q), np.quantile(values, 1 - q)
        rules.append((f"up-q{q:.2f}", "up", [p for p in ranked["up"] if p.delta_c >= up]))
        rules.append((f"down-q{q:.2f}", "down", [p for p in ranked["down"] if p.delta_c <= down]))
    seen: set[frozenset[int]] = set()
    out = []
    for name, direction, members in rules:
        key = frozenset(p.latent for p in members)
        if members and key not in seen:
            seen.add(key)
            out.append(CandidateSet(name, direction, tuple(p.latent for p in members),
                                    mean_or_none([p.dev_hm for p in members]),
                                    mean_or_none([p.test_hm for p in members])))
    return out


def _best(sets: Sequence[CandidateSet], half: str) -> CandidateSet:
    """The highest mean on ``half``; on ties the smaller set, then the earlier one."""
    return max(sets, key=lambda s: (getattr(s, half), -len(s.latents)))


def _gain(after: float | None, before: float | None) -> float | None:
    return 100 * (after - before) / before if after is not None and before else None


def dtc_score(pool: Sequence[PoolLatent], cfg: SelectionConfig) -> float:
    """g_dtc of a pool: the test score of the candidate set chosen on dev."""
    return _best(candidate_sets(pool, cfg), "dev").test


def dtc_gain(pool: Sequence[PoolLatent], cfg: SelectionConfig) -> float:
    """The gain L = (g_dtc - g) / g of a pool, in percent (NaN where g is 0)."""
    gain = _gain(dtc_score(pool, cfg), mean_or_none([p.test_hm for p in pool]))
    return float("nan") if gain is None else gain


def random_rank_control(pool: Sequence[PoolLatent], cfg: SelectionConfig, draws: int = 64, seed: int = 0
                        ) -> float | None:
    """The test score of the dev-chosen set when the pool is ranked in a random order instead of by DeltaC,
    averaged over ``draws`` seeded orders: what the choice among candidate sets gains without DTC."""
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(draws):
        order = rng.permutation(len(pool)).astype(float)
        shuffled = [replace(p, delta_c=float(v)) for p, v in zip(pool, order, strict=True)]
        scores.append(_best(candidate_sets(shuffled, cfg), "dev").test)
    return mean_or_none(scores)


@dataclass(frozen=True)
class SelectionResult:
    """One SAE's selection: its candidate sets with their dev and test scores, and the summary (table
    ``selection``)."""

    rows: list[CandidateSet]
    summary: SelectionSummary


def run_selection(pool: Sequence[PoolLatent], cfg: SelectionConfig, sae: SAEIdentity) -> SelectionResult:
    """The chosen set, g_dtc, g_out and the gains of the SAE ``sae``. An empty pool gives nulls, not an error:
    an SAE whose concepts were all left unexplained has no steering score to select on."""
    sets = candidate_sets(pool, cfg) if pool else []
    if not sets:
        empty = SelectionSummary(identity=sae, g=None, g_out=None, g_dtc=None, g_dtc_chosen_on_test=None,
                                 g_random_rank=None, gain=None, gain_out=None, chosen_set=None, chosen_latents=[],
                                 size=0, direction=None, chosen_on_test_set=None, n_pool=len(pool), n_candidates=0)
        return SelectionResult([], empty)
    g = mean_or_none([p.test_hm for p in pool])
    chosen, on_test = _best(sets, "dev"), _best(sets, "test")
    by_output = sorted(pool, key=lambda p: (-p.output_score, p.latent))[:len(chosen.latents)]
    g_out = mean_or_none([p.test_hm for p in by_output])
    return SelectionResult(sets, SelectionSummary(
        identity=sae, g=g, g_out=g_out, g_dtc=chosen.test, g_dtc_chosen_on_test=on_test.test,
        g_random_rank=random_rank_control(pool, cfg),
        gain=_gain(chosen.test, g), gain_out=_gain(g_out, g), chosen_set=chosen.name,
        chosen_latents=list(chosen.latents), size=len(chosen.latents), direction=chosen.direction,
        chosen_on_test_set=on_test.name, n_pool=len(pool), n_candidates=len(sets)))
