"""Instruments against known answers: tau-b against the oracles' corruption level and its exact p-value."""

import itertools
from math import factorial

import numpy as np
import pytest

from sae_models.evals.validity import corruption_validity
from sae_models.stats import inversion_counts, kendall_tau_b, level_tau_p

LEVELS = np.repeat([0.0, 0.25, 0.5, 0.75, 1.0], 3)


@pytest.mark.parametrize("sizes", [[2, 2, 1], [1, 3, 2], [1, 1, 1, 1], [3, 3]])
def test_the_exact_p_is_the_share_of_all_arrangements_at_least_as_extreme(sizes):
    rng = np.random.default_rng(len(sizes))
    x = np.repeat(np.arange(len(sizes)), sizes).astype(float)
    y = rng.standard_normal(len(x))
    observed = abs(kendall_tau_b(x, y))
    arrangements = {p for p in itertools.permutations(x)}
    brute = np.mean([abs(kendall_tau_b(np.array(p), y)) >= observed - 1e-12 for p in arrangements])
    assert level_tau_p(x, y) == pytest.approx(brute)
    assert sum(inversion_counts(sizes)) == factorial(len(x)) // np.prod([factorial(n) for n in sizes])


def test_an_instrument_that_tracks_quality_ranks_the_oracles_and_one_that_does_not_fails():
    rng = np.random.default_rng(0)
    scores = {"perfect": list(1 - LEVELS + rng.uniform(0, 0.01, 15)),
              "backwards": list(LEVELS + rng.uniform(0, 0.01, 15)),
              "noise": list(rng.standard_normal(15)),
              "tied": list(np.round(1 - LEVELS, 1)),
              "gappy": [None, *(1 - LEVELS[1:] + rng.uniform(0, 0.01, 14))]}
    rows = {r.instrument: r for r in corruption_validity("m", list(LEVELS), scores)}
    best = np.sqrt(90 / 105)  # the largest |tau-b| with 5 levels x 3 tied dictionaries: 90 of 105 pairs differ
    assert rows["perfect"].tau_b == pytest.approx(-best) and rows["perfect"].p_exact
    assert rows["perfect"].tau_max == pytest.approx(best)
    assert rows["perfect"].p_value == pytest.approx(2 / 168_168_000)  # 15! / (3!)^5 arrangements, both extremes
    assert rows["backwards"].tau_b == pytest.approx(best)
    assert abs(rows["noise"].tau_b) < 0.5 and rows["noise"].p_value > 0.05
    assert not rows["tied"].p_exact and rows["tied"].p_value < 0.01  # ties: 9,999 permutations instead
    assert rows["gappy"].n == 14 and rows["gappy"].levels == 5
    assert {r.against for r in rows.values()} == {"corruption"}
