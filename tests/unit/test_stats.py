"""The Python tau-b behind every permutation p-value and BCa interval, against scipy on tied data (its SQL twin is
tested in test_rank_sql.py)."""

import numpy as np
import pytest
from scipy import stats

from sae_models.stats import kendall_tau_b, tau_inference


def test_tau_b_corrects_for_ties_on_both_sides_as_scipy_does():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(6, 25))  # heavy ties: 4 values over 25 items
    y = x + rng.integers(0, 3, size=(6, 25))
    vectorized = kendall_tau_b(x, y)
    for row, tau in zip(range(6), vectorized, strict=True):
        expected = stats.kendalltau(x[row], y[row], variant="b").statistic
        assert tau == pytest.approx(expected, abs=1e-12)
    untied = stats.kendalltau(x[0], y[0], variant="c").statistic  # tau-c: a different correction, to tell apart
    assert abs(vectorized[0] - untied) > 1e-3


def test_the_interval_and_p_value_are_built_on_the_tied_tau_b():
    x = np.array([1, 1, 2, 2, 3, 3, 4, 4, 5, 5.0])
    y = np.array([1, 2, 2, 3, 3, 3, 5, 4, 6, 6.0])
    tau = stats.kendalltau(x, y).statistic
    result = tau_inference(x, y, resamples=999)
    assert result.ci_low < tau < result.ci_high and 0 <= result.p_value < 0.01
