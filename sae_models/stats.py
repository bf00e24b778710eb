"""Statistics shared by the reports: confidence intervals and rank correlations (scipy underneath)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def t_half_width(standard_error: float | None, n: int, level: float = 0.95) -> float:
    """Half-width of the Student-t interval of a mean with this standard error over ``n`` values."""
    if not standard_error or n < 2:
        return 0.0
    return float(stats.t.ppf(0.5 + level / 2, n - 1)) * standard_error


def spearman(x, y) -> float | None:
    """Spearman's rho, or None when it is undefined (fewer than 3 pairs, or a constant side)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(stats.spearmanr(x, y).statistic)
