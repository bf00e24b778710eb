"""Instrument reliability: how much of an SAE-level score is the SAE, and how much the draw of its units.

An SAE's mu is a mean over its CONCEPT100 latents, its g a mean over its steered concepts: a sample of units,
so two SAEs can differ by the luck of their draws alone. Split-half reliability measures how much of the
spread between SAEs survives a redraw. Per model, over its SAEs: split each SAE's units into two disjoint random
halves, compute the instrument on each half, take the Pearson correlation r between the halves across SAEs and
correct it to the full number of units (Spearman-Brown: 2r / (1 + r)); average over ``splits`` random splits.
The interval resamples the SAEs (percentile bootstrap over the same splits).

A reliability near 0 means the instrument's differences between SAEs are noise: it cannot correlate with
anything. Between two instruments of reliabilities rel_x and rel_y the observable Pearson correlation is at most
sqrt(rel_x rel_y) of the true one, and for normal scores Kendall's tau = (2/pi) arcsin(Pearson), so
``tau_ceiling`` = (2/pi) arcsin(sqrt(rel_x rel_y)) bounds any tau between them.

Config, run, typed output: ``[analysis] resamples`` (at most 999 here) and ``[selection]``'s candidate sets ->
``run_reliability`` -> a ``ReliabilityRow`` per model and instrument, and per pair its ceiling (the
``instrument_reliability`` table).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sae_models.arrow import schema_of

SPLITS = 200
# Means of their units (g_lift: g - g_unsteered); the toy world's two truths too, so that the world's own answer
# gets the same ceiling as the pipeline's.
MEAN_INSTRUMENTS = ("mu", "mu_balanced", "mu_simulation", "g", "g_lift", "true_interpretability",
                    "true_steerability")
SELECTION_INSTRUMENTS = ("g_dtc", "gain")  # selection rerun on each half of the steered concepts
# The pairs whose tau the report reads: [W25]'s questions (mu vs g, mu vs the gain) and their variants, each
# instrument against its truth, and the world's own answer.
PAIRS = (("mu", "g"), ("mu", "g_lift"), ("mu", "g_dtc"), ("mu", "gain"), ("mu_simulation", "g"),
         ("mu", "true_interpretability"), ("mu_balanced", "true_interpretability"), ("g", "true_steerability"),
         ("true_interpretability", "true_steerability"))


@dataclass
class ReliabilityRow:
    """One row of ``instrument_reliability``: an instrument's reliability over a model's SAEs, or (``partner``
    set) the ceiling two instruments' reliabilities set on a tau between them."""

    model: str
    instrument: str
    partner: str | None  # a pair row: the second instrument
    n_saes: int
    units: float | None  # median units per SAE (latents, concepts)
    half_r: float | None  # mean Pearson r between the two halves (uncorrected)
    reliability: float | None  # Spearman-Brown corrected, mean over the splits
    ci_low: float | None  # 95% percentile bootstrap over SAEs
    ci_high: float | None
    tau_ceiling: float | None  # pair rows: (2/pi) arcsin(sqrt(rel_x rel_y))
    splits: int


RELIABILITY_SCHEMA = schema_of(ReliabilityRow)


def spearman_brown(r: np.ndarray) -> np.ndarray:
    """The reliability of the full-length score from the correlation of its two halves."""
    with np.errstate(all="ignore"):
        return 2 * r / (1 + r)


def half_scores(units: Sequence[Sequence[Any]], statistic: Callable[[Sequence[Any]], float], splits: int = SPLITS,
                seed: int = 0) -> np.ndarray:
    """[splits, SAEs, 2] the statistic on two disjoint random halves of each SAE's units (of equal size: an odd
    unit out is left out of that split)."""
    rng = np.random.default_rng(seed)
    out = np.full((splits, len(units), 2), np.nan)
    for s in range(splits):
        for i, own in enumerate(units):
            half = len(own) // 2
            if half == 0:
                continue
            order = rng.permutation(len(own))
            out[s, i, 0] = statistic([own[j] for j in order[:half]])
            out[s, i, 1] = statistic([own[j] for j in order[half:2 * half]])
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis, NaN where a side is constant."""
    a, b = a - a.mean(-1, keepdims=True), b - b.mean(-1, keepdims=True)
    with np.errstate(all="ignore"):
        return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def reliability(halves: np.ndarray) -> tuple[float | None, float | None]:
    """(mean half correlation r, mean Spearman-Brown reliability) over the splits; None with fewer than 3 SAEs
    or no split with two varying sides."""
    keep = ~np.isnan(halves).any((0, 2))
    halves = halves[:, keep]
    if halves.shape[1] < 3:
        return None, None
    r = _pearson(halves[..., 0], halves[..., 1])
    r = r[np.isfinite(r)]
    return (float(r.mean()), float(spearman_brown(r).mean())) if len(r) else (None, None)


def bootstrap_interval(halves: np.ndarray, resamples: int, level: float = 0.95, seed: int = 0
                       ) -> tuple[float | None, float | None]:
    """Percentile interval of the reliability with the SAEs resampled (the splits kept)."""
    halves = halves[:, ~np.isnan(halves).any((0, 2))]
    n = halves.shape[1]
    if n < 3:
        return None, None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        picked = halves[:, rng.integers(0, n, n)]
        r = _pearson(picked[..., 0], picked[..., 1])
        sb = spearman_brown(r[np.isfinite(r)])
        if len(sb):
            values.append(sb.mean())
    if not values:
        return None, None
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def tau_ceiling(rel_x: float | None, rel_y: float | None) -> float | None:
    """The largest Kendall tau two instruments of these reliabilities can show (0 when either is at most 0)."""
    if rel_x is None or rel_y is None:
        return None
    return float(2 / np.pi * np.arcsin(np.sqrt(max(0.0, min(1.0, rel_x * rel_y)))))


def instrument_reliability(model: str, instrument: str, units: Sequence[Sequence[Any]],
                           statistic: Callable[[Sequence[Any]], float] = np.mean, resamples: int = 999,
                           splits: int = SPLITS, seed: int = 0) -> ReliabilityRow:
    """The reliability row of one instrument over one model's SAEs; ``units[i]`` are SAE i's units, and
    ``statistic`` makes the instrument of a list of them (the mean, for mu and g)."""
    halves = half_scores(units, statistic, splits, seed)
    half_r, rel = reliability(halves)
    low, high = bootstrap_interval(halves, resamples, seed=seed) if rel is not None else (None, None)
    sizes = [len(u) for u in units]
    return ReliabilityRow(model, instrument, None, len(units), float(np.median(sizes)) if sizes else None, half_r,
                          rel, low, high, None, splits)


def model_reliability(model: str, units: dict[str, Sequence[Sequence[float]]], pools: Sequence[Sequence[Any]],
                      selection_cfg: Any, resamples: int = 999, splits: int = SPLITS, seed: int = 0
                      ) -> list[ReliabilityRow]:
    """Every instrument's row for one model (``units``: per mean instrument, each SAE's unit values; ``pools``:
    each SAE's selection pool of ``PoolLatent``), then the ceiling of every pair in ``PAIRS``."""
    from sae_models.evals.selection import dtc_gain, dtc_score

    rows = {name: instrument_reliability(model, name, units.get(name, []), np.mean, resamples, splits, seed)
            for name in MEAN_INSTRUMENTS}
    for name, statistic in (("g_dtc", dtc_score), ("gain", dtc_gain)):
        rows[name] = instrument_reliability(model, name, pools, lambda half, f=statistic: f(half, selection_cfg),
                                            resamples, splits, seed)
    return [*rows.values(), *(pair_ceiling(rows[x], rows[y]) for x, y in PAIRS)]


def pair_ceiling(x: ReliabilityRow, y: ReliabilityRow) -> ReliabilityRow:
    """The row of the ceiling two instruments of one model set on a tau between them."""
    return ReliabilityRow(x.model, x.instrument, y.instrument, min(x.n_saes, y.n_saes), None, None, None, None, None,
                          tau_ceiling(x.reliability, y.reliability), x.splits)


def run_reliability(units: Sequence[dict], pool: Sequence[dict], selection_cfg: Any, resamples: int = 999
                    ) -> list[ReliabilityRow]:
    """``model_reliability`` of every model: ``units`` are sql/reliability_units.sql's rows (model, instrument,
    each SAE's unit values), ``pool`` sql/reliability_pool.sql's (each SAE's steered concepts with their scores)."""
    from sae_models.evals.selection import PoolLatent

    rows = []
    for model in sorted({u["model"] for u in units}):
        by_instrument: dict[str, list[list[float]]] = {}
        for u in (u for u in units if u["model"] == model):
            by_instrument.setdefault(u["instrument"], []).append(u["values"])
        pools: dict[str, list[PoolLatent]] = {}
        for r in (r for r in pool if r["model"] == model):
            pools.setdefault(r["sae"], []).append(PoolLatent(r["latent"], r[f"delta_c{selection_cfg.rank_k}"],
                                                             r["output_score"], r["dev_hm"], r["test_hm"]))
        rows += model_reliability(model, by_instrument, list(pools.values()), selection_cfg, resamples)
    return rows
