"""Statistics shared by the reports: confidence intervals and rank correlations (scipy underneath)."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats


def t_half_width(standard_error: float | None, n: int, level: float = 0.95) -> float:
    """Half-width of the Student-t interval of a mean with this standard error over ``n`` values."""
    if not standard_error or n < 2:
        return 0.0
    return float(stats.t.ppf(0.5 + level / 2, n - 1)) * standard_error


def pearson_interval(r: float | None, n: int, level: float = 0.95) -> tuple[float | None, float | None]:
    """Fisher-z interval of a Pearson r over ``n`` independent pairs; (None, None) when undefined."""
    if r is None or n < 4 or not -1 < r < 1:
        return None, None
    half = float(stats.norm.ppf(0.5 + level / 2)) / np.sqrt(n - 3)
    return float(np.tanh(np.arctanh(r) - half)), float(np.tanh(np.arctanh(r) + half))


def spearman(x, y) -> float | None:
    """Spearman's rho, or None when it is undefined (fewer than 3 pairs, or a constant side)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(stats.spearmanr(x, y).statistic)


@dataclass(frozen=True)
class TauInference:
    """A permutation p-value and a BCa bootstrap interval for Kendall's tau-b over one group's pairs."""

    ci_low: float | None
    ci_high: float | None
    p_value: float | None


RESAMPLES = 9999  # permutations and bootstrap resamples of every interval and p-value, unless a caller asks


def mean_or_none(values) -> float | None:
    """The mean, or None for no values."""
    return float(np.mean(values)) if len(values) else None


def kendall_tau_b(x, y, axis: int = -1) -> np.ndarray:
    """Tau-b along ``axis``, vectorized over any leading (resample) dimensions: the sign matrices of all pairs,
    so it is exact with ties and O(n^2) memory per resample (SAEs number tens to hundreds)."""
    x, y = np.moveaxis(np.asarray(x, float), axis, -1), np.moveaxis(np.asarray(y, float), axis, -1)
    sx = np.sign(x[..., :, None] - x[..., None, :])
    sy = np.sign(y[..., :, None] - y[..., None, :])
    with np.errstate(all="ignore"):
        return (sx * sy).sum((-1, -2)) / np.sqrt(np.abs(sx).sum((-1, -2)) * np.abs(sy).sum((-1, -2)))


def tau_inference(x, y, resamples: int = RESAMPLES, level: float = 0.95, seed: int = 0) -> TauInference:
    """Two-sided permutation p-value (y permuted against x) and a BCa bootstrap CI (pairs resampled) of tau-b;
    all None when tau-b is undefined (fewer than 3 pairs, or a constant side). A bootstrap whose resamples are
    too often degenerate for BCa (tiny groups) gives a None interval rather than a misleading one."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return TauInference(None, None, None)
    rng = np.random.default_rng(seed)
    batch = max(1, 2_000_000 // len(x) ** 2)  # resamples per call: a few hundred MB at most
    p = stats.permutation_test((y,), lambda yy, axis=-1: kendall_tau_b(x, yy, axis), permutation_type="pairings",
                               n_resamples=resamples, vectorized=True, batch=batch, alternative="two-sided",
                               random_state=rng).pvalue
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # reported as a None interval below
        ci = stats.bootstrap((x, y), kendall_tau_b, paired=True, vectorized=True, batch=batch,
                             n_resamples=resamples, confidence_level=level, method="BCa",
                             random_state=rng).confidence_interval
    low, high = float(ci.low), float(ci.high)
    finite = np.isfinite(low) and np.isfinite(high)
    return TauInference(low if finite else None, high if finite else None, float(p))


def inversion_counts(sizes) -> np.ndarray:
    """How many arrangements of groups of ``sizes`` (items within a group alike) have each number J of
    out-of-order pairs, J = 0 .. sum over group pairs of n_g n_h: the coefficients of the Gaussian multinomial
    [N; n_1, ..., n_k]_q, built as a product of Gaussian binomials by Pascal's rule (exact integers)."""
    total: list[int] = [1]
    placed = 0
    for n in sizes:
        placed += n
        total = _poly_mul(total, _gaussian_binomial(placed, n))
    return np.array(total, dtype=object)


def _gaussian_binomial(m: int, r: int) -> list[int]:
    """Coefficients of [m choose r]_q, row by row of the q-Pascal rule [m; k] = [m-1; k-1] + q^k [m-1; k]
    ([m-1; m] is the zero polynomial)."""
    row = [[1]]  # [0; 0]
    for mm in range(1, m + 1):
        row = [_poly_add(row[k - 1] if k else [], [0] * k + row[k] if k < mm else [])
               for k in range(min(mm, r) + 1)]
    return row[r]


def _poly_add(a: list[int], b: list[int]) -> list[int]:
    return [x + y for x, y in itertools.zip_longest(a, b, fillvalue=0)]


def _poly_mul(a: list[int], b: list[int]) -> list[int]:
    out = [0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def level_tau_p(levels, values) -> float | None:
    """Exact two-sided permutation p-value of tau-b between ``levels`` (a known ordering with ties, e.g. a
    corruption level given to several dictionaries) and ``values`` without ties: the null distribution of the
    tau-b numerator over every distinct arrangement of the levels, counted exactly (``inversion_counts``).
    None when ``values`` tie (use ``tau_inference``) or a side is constant."""
    x, y = np.asarray(levels, float), np.asarray(values, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0 or len(np.unique(y)) < len(y):
        return None
    sizes = [int(n) for n in np.unique(x, return_counts=True)[1]]
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
    between = int(np.triu(np.abs(sx), 1).sum())  # pairs in different groups
    s = int(np.triu(sx * sy, 1).sum())
    counts = inversion_counts(sizes)
    numerators = np.abs(2 * np.arange(len(counts)) - between)  # S = between - 2 J over the arrangements
    return float(sum(counts[numerators >= abs(s)]) / sum(counts))


def mean_difference_ci(a, b, paired: bool = False, resamples: int = RESAMPLES, level: float = 0.95, seed: int = 0
                       ) -> tuple[float | None, float | None]:
    """BCa bootstrap interval of mean(a) - mean(b): each sample resampled within itself, or (``paired``) the
    pairs resampled together. (None, None) with fewer than 2 values on a side, or when the bootstrap is
    degenerate (paired samples whose differences are all equal); (d, d) when every value of each side is the
    same (no resample can differ)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return None, None
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return float(a[0] - b[0]), float(a[0] - b[0])

    def difference(x, y, axis=-1):
        return x.mean(axis) - y.mean(axis)

    with np.errstate(all="ignore"), warnings.catch_warnings():  # a degenerate bootstrap, e.g. paired with a
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # constant difference: (None, None) below
        ci = stats.bootstrap((a, b), difference, paired=paired, vectorized=True, n_resamples=resamples,
                             confidence_level=level, method="BCa", random_state=np.random.default_rng(seed)
                             ).confidence_interval
    low, high = float(ci.low), float(ci.high)
    return (low, high) if np.isfinite(low) and np.isfinite(high) else (None, None)
