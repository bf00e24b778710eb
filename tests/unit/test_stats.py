"""The statistics behind every figure: the Python tau-b behind every permutation p-value and BCa interval (against
scipy on tied data; its SQL twin is tested in test_rank_sql.py), the intervals, and their edge cases."""

import warnings

import numpy as np
import pytest
from scipy import stats

from sae_models.stats import (
    TauInference,
    kendall_tau_b,
    mean_difference_ci,
    mean_or_none,
    pearson_interval,
    spearman,
    t_half_width,
    tau_inference,
)


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


UINT = np.array([3, 1, 2, 5, 4], dtype=np.uint8)  # unsigned: a difference that wraps would flip signs
FLOATS = np.array([0.3, -1.2, 0.5, 2.0, 1.1])
MODERATE = (np.arange(12.0), np.array([3, 0, 5, 1, 2, 8, 4, 11, 6, 9, 7, 10.0]))  # exact p 0.009


def test_tau_b_of_integer_and_boolean_inputs_is_that_of_their_values():
    assert kendall_tau_b(UINT, FLOATS) == pytest.approx(kendall_tau_b(UINT.astype(float), FLOATS))
    assert kendall_tau_b(FLOATS, UINT) == pytest.approx(kendall_tau_b(FLOATS, UINT.astype(float)))
    flags = np.array([True, False, True, False, True])
    assert kendall_tau_b(flags, FLOATS) == pytest.approx(kendall_tau_b(flags.astype(float), FLOATS))


def test_a_constant_side_gives_nan_without_a_warning_since_resamples_hit_it_routinely():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(kendall_tau_b([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))


@pytest.mark.parametrize("x, y", [([1, 1, 1, 1], [1, 2, 3, 4]), ([1, 2, 3, 4], [5, 5, 5, 5]), ([1, 2], [2, 1])])
def test_tau_inference_is_empty_when_tau_b_is_undefined(x, y):
    assert tau_inference(x, y, resamples=99) == TauInference(None, None, None)


def test_tau_inference_from_three_pairs_on_is_exact_and_the_ci_is_none_when_the_bootstrap_degenerates():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the degenerate bootstrap is reported as None, not as a warning
        three = tau_inference([1, 2, 3], [1, 3, 2], resamples=99)
    assert three.p_value == pytest.approx(1.0) and three.ci_low is None and three.ci_high is None
    assert tau_inference([1, 2, 3], [1, 2, 3], resamples=99).p_value == pytest.approx(2 / 6)  # 2 of 3! as extreme


def test_tau_inference_is_the_same_for_one_seed_and_its_resamples_and_level_are_used():
    x, y = MODERATE
    first, again = tau_inference(x, y, resamples=199, seed=3), tau_inference(x, y, resamples=199, seed=3)
    assert first == again and first != tau_inference(x, y, resamples=199, seed=4)
    assert tau_inference(x, y, resamples=199) == tau_inference(x, y, resamples=199, seed=0)  # the tables' seed
    assert tau_inference(x, flags := y > 5, resamples=199) == tau_inference(x, flags.astype(float), resamples=199)
    assert (first.p_value * 200) == pytest.approx(round(first.p_value * 200))  # (hits + 1) / (resamples + 1)
    narrow = tau_inference(x, y, resamples=199, seed=3, level=0.5)
    assert first.ci_low < narrow.ci_low < narrow.ci_high < first.ci_high
    flags = x > 5
    assert tau_inference(flags, y, resamples=199) == tau_inference(flags.astype(float), y, resamples=199)
    assert tau_inference(UINT, FLOATS, resamples=99) == tau_inference(UINT.astype(float), FLOATS, resamples=99)


def test_both_scipy_resamplings_get_the_requested_resamples_level_and_method(monkeypatch):
    calls = {}

    def spy(name, real):
        def record(*args, **kwargs):
            calls[name] = kwargs
            return real(*args, **kwargs)
        monkeypatch.setattr(stats, name, record)

    spy("permutation_test", stats.permutation_test)
    spy("bootstrap", stats.bootstrap)
    tau_inference(*MODERATE, resamples=123, level=0.8)
    assert calls["permutation_test"]["n_resamples"] == calls["bootstrap"]["n_resamples"] == 123
    assert calls["bootstrap"]["confidence_level"] == 0.8 and calls["bootstrap"]["method"].lower() == "bca"
    mean_difference_ci([1, 2, 4, 8], [0, 1, 1, 3], resamples=77, level=0.7)
    assert calls["bootstrap"]["n_resamples"] == 77 and calls["bootstrap"]["confidence_level"] == 0.7


def test_the_mean_difference_interval_is_seeded_paired_when_asked_and_degenerate_only_when_both_sides_are():
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 1.0, 3.0, 3.0, 4.0]
    unpaired = mean_difference_ci(a, b, resamples=999)
    paired = mean_difference_ci(a, b, paired=True, resamples=999)
    assert paired[0] > unpaired[0] and paired[1] < unpaired[1]  # the pairs move together: a narrower interval
    assert unpaired == mean_difference_ci(a, b, resamples=999) != mean_difference_ci(a, b, resamples=999, seed=1)
    assert unpaired == mean_difference_ci(a, b, resamples=999, seed=0)  # the tables' seed
    narrow = mean_difference_ci(a, b, resamples=999, level=0.5)
    assert unpaired[0] < narrow[0] < narrow[1] < unpaired[1]
    assert mean_difference_ci([1, 1, 1], [2, 2, 2, 2]) == (-1.0, -1.0)  # no resample can differ
    one_constant = mean_difference_ci(a, [2.0] * 5, resamples=999)
    assert one_constant[0] < 1.0 < one_constant[1]  # only one side constant: a real interval around 3 - 2
    assert mean_difference_ci([1, 2], [0, 0], resamples=99) == (1.0, 2.0)  # two values: the smallest sample
    assert mean_difference_ci([1], [0, 0]) == (None, None) and mean_difference_ci([1, 2], [0]) == (None, None)
    ints = np.array([1, 2, 3, 4, 5], dtype=np.uint8)
    assert mean_difference_ci(ints, ints[::-1] + 1, resamples=99) == mean_difference_ci(
        ints.astype(float), ints[::-1].astype(float) + 1, resamples=99)
    flags = np.array([True, False, True, True])
    for x, y in ((flags, ~flags), ([1.0] * 4, flags), (flags, [1.0] * 4)):
        assert mean_difference_ci(x, y, resamples=99) == mean_difference_ci(
            np.asarray(x, float), np.asarray(y, float), resamples=99)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a degenerate bootstrap (a constant paired difference) is reported as None
        assert mean_difference_ci([1, 2, 3], [0, 1, 2], paired=True, resamples=99) == (None, None)


def test_the_mean_of_nothing_is_none():
    assert mean_or_none([]) is None and mean_or_none([1, 2]) == 1.5


def test_the_t_interval_half_width_is_the_t_quantile_times_the_standard_error():
    assert t_half_width(0.5, 10) == pytest.approx(stats.t.ppf(0.975, 9) * 0.5)
    assert t_half_width(0.5, 2) == pytest.approx(stats.t.ppf(0.975, 1) * 0.5)
    assert t_half_width(0.5, 10, level=0.5) == pytest.approx(stats.t.ppf(0.75, 9) * 0.5)
    assert t_half_width(None, 10) == t_half_width(0.0, 10) == t_half_width(0.5, 1) == 0.0


def test_the_pearson_interval_is_fishers_z_and_undefined_at_the_edges():
    low, high = pearson_interval(0.5, 20)
    half = stats.norm.ppf(0.975) / np.sqrt(17)
    assert (low, high) == pytest.approx((np.tanh(np.arctanh(0.5) - half), np.tanh(np.arctanh(0.5) + half)))
    narrow = pearson_interval(0.5, 20, level=0.5)
    assert low < narrow[0] < 0.5 < narrow[1] < high
    assert pearson_interval(0.5, 4)[0] is not None
    for r, n in ((None, 20), (0.5, 3), (1.0, 20), (-1.0, 20)):
        assert pearson_interval(r, n) == (None, None)


def test_spearman_matches_scipy_and_is_none_when_undefined():
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2, 3], [4, 4, 4]) is None
