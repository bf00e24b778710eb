"""Which cheap metric predicts steering utility? Per model, over its SAEs, Kendall's tau-b of every per-SAE metric
(sparsity, reconstruction, downstream loss, dead latents, autointerp, and on the toy world concept recovery and
true interpretability) against g and against the judge-free true steerability, with a permutation p-value, a BCa
interval, and the p-value adjusted by Holm's step-down method over all the model's comparisons: with 18 tests
per model, an unadjusted p below 0.05 is expected about once by chance alone.

Config, run, typed output: ``[analysis] resamples`` -> ``run_proxies`` -> a ``ProxyRow`` per model, metric and
target (the ``proxies`` table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.multitest import multipletests

from sae_models.arrow import schema_of
from sae_models.stats import RESAMPLES, kendall_tau_b, tau_inference

METRICS = ("l0", "explained_variance", "ce_loss_score", "kl_div_score", "dead_fraction", "mu", "mu_simulation",
           "concept_f1", "true_interpretability")
TARGETS = ("g", "true_steerability")


@dataclass
class ProxyRow:
    """One row of ``proxies``: how well one per-SAE metric ranks one model's SAEs by a steering target."""

    model: str
    metric: str
    target: str  # g (the judge's steering utility) or true_steerability (the toy world's judge-free one)
    n: int  # SAEs with both values
    tau_b: float | None
    ci_low: float | None  # 95% BCa over SAEs
    ci_high: float | None
    p_value: float | None  # two-sided permutation p
    p_holm: float | None  # Holm-adjusted over the model's comparisons that have a p-value


PROXIES_SCHEMA = schema_of(ProxyRow)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of the p-values that exist (None stays None)."""
    have = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    if have:
        adjusted = multipletests([p_values[i] for i in have], method="holm")[1]
        for i, p in zip(have, adjusted, strict=True):
            out[i] = float(p)
    return out


def model_proxies(model: str, saes: Sequence[dict], resamples: int = RESAMPLES) -> list[ProxyRow]:
    """Every (metric, target) row of one model; ``saes`` are its SAEs' rows with the METRICS and TARGETS columns
    (None where missing: a real model has no truth)."""
    rows = []
    for target in TARGETS:
        for metric in METRICS:
            pairs = [(s[metric], s[target]) for s in saes
                     if s.get(metric) is not None and s.get(target) is not None
                     and np.isfinite(s[metric]) and np.isfinite(s[target])]
            x, y = (np.asarray(v, float) for v in zip(*pairs, strict=True)) if pairs else (np.zeros(0), np.zeros(0))
            defined = len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0
            inference = tau_inference(x, y, resamples) if defined else None
            rows.append(ProxyRow(model, metric, target, len(x), float(kendall_tau_b(x, y)) if defined else None,
                                 inference.ci_low if inference else None, inference.ci_high if inference else None,
                                 inference.p_value if inference else None, None))
    for row, adjusted in zip(rows, holm([r.p_value for r in rows]), strict=True):
        row.p_holm = adjusted
    return rows


def run_proxies(saes: Sequence[dict], resamples: int = RESAMPLES) -> list[ProxyRow]:
    """``model_proxies`` of every model of ``saes`` (sql/proxies.sql: one row per SAE with its model)."""
    return [row for model in sorted({s["model"] for s in saes})
            for row in model_proxies(model, [s for s in saes if s["model"] == model], resamples)]
