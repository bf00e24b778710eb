"""Split-half reliability: near 1 for an instrument whose SAEs differ far more than their units' noise, near 0
for one whose differences are noise, and the tau ceiling it implies."""

import numpy as np
import pytest

from sae_models.evals.config import SelectionConfig
from sae_models.evals.reliability import (
    MEAN_INSTRUMENTS,
    PAIRS,
    instrument_reliability,
    model_reliability,
    spearman_brown,
    tau_ceiling,
)
from sae_models.evals.selection import PoolLatent


def _units(spread: float, noise: float, n_saes: int = 30, n_units: int = 64, seed: int = 0) -> list[list[float]]:
    """SAE i's units: its true score (spread apart by ``spread``) plus independent unit noise."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(0, spread, n_saes)
    return [list(t + rng.normal(0, noise, n_units)) for t in truth]


def test_reliability_tracks_the_share_of_true_variance():
    # per-SAE means have noise variance noise^2 / 64; true variance spread^2: reliability = s^2 / (s^2 + n^2/64)
    for spread, noise in ((1.0, 1.0), (0.125, 1.0), (0.0, 1.0)):
        expected = spread**2 / (spread**2 + noise**2 / 64)
        row = instrument_reliability("m", "mu", _units(spread, noise), resamples=200)
        assert row.reliability == pytest.approx(expected, abs=0.12)
        assert row.ci_low <= row.reliability <= row.ci_high
    assert instrument_reliability("m", "mu", _units(1.0, 1.0), resamples=200).ci_low > 0.9
    noise_only = instrument_reliability("m", "mu", _units(0.0, 1.0), resamples=200)
    assert noise_only.ci_low < 0 < noise_only.ci_high


def test_spearman_brown_and_the_tau_ceiling():
    assert spearman_brown(np.array([0.5]))[0] == pytest.approx(2 / 3)
    assert tau_ceiling(1.0, 1.0) == pytest.approx(1.0)
    assert tau_ceiling(0.5, 0.5) == pytest.approx(1 / 3)  # (2/pi) arcsin(1/2)
    assert tau_ceiling(-0.2, 0.9) == 0.0 and tau_ceiling(None, 0.5) is None


def test_too_few_saes_or_units_give_no_reliability():
    assert instrument_reliability("m", "g", [[1.0, 2.0], [3.0, 1.0]]).reliability is None
    assert instrument_reliability("m", "g", [[1.0]] * 5).reliability is None


def test_model_rows_cover_every_instrument_and_pair():
    rng = np.random.default_rng(1)
    units = {name: _units(1.0, 1.0, seed=i) for i, name in enumerate(("mu", "mu_simulation", "g", "g_lift"))}
    pools = [[PoolLatent(j, float(rng.normal()), 0.5, float(t + rng.normal(0, 0.3)), float(t + rng.normal(0, 0.3)))
              for j in range(16)] for t in rng.normal(1.0, 0.5, 12)]
    rows = model_reliability("m", units, pools, SelectionConfig(), resamples=50, splits=20)
    single = {r.instrument: r for r in rows if r.partner is None}
    assert set(single) == {*MEAN_INSTRUMENTS, "g_dtc", "gain"}
    assert single["true_steerability"].n_saes == 0 and single["true_steerability"].reliability is None  # no units
    assert single["g_dtc"].n_saes == 12 and single["g_dtc"].reliability > 0.5  # the SAEs' pools differ by 0.5
    pairs = [(r.instrument, r.partner) for r in rows if r.partner is not None]
    assert pairs == list(PAIRS)
    missing = {"mu_balanced", "true_interpretability", "true_steerability"}  # given no units here
    assert all((r.tau_ceiling is None) == bool({r.instrument, r.partner} & missing) for r in rows if r.partner)
    assert all(0 <= r.tau_ceiling <= 1 for r in rows if r.partner is not None and r.tau_ceiling is not None)
