"""Rank agreement between SAE-level scores: Kendall tau-b per group as the catalog's SQL computes
it, with a permutation p-value and a BCa bootstrap interval over the same items, and the axis-controlled psi
and Psi. The shape of [W25] Tables 1 and 3: comparison, group, n, pairs, tau_b, CI, p.

Config, run, typed output: ``[analysis] resamples`` and ``[control] in_rank_analysis`` -> ``run_rank_agreement``
-> a ``RankRow`` per comparison and group (the ``rank_agreement`` table)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sae_models.arrow import schema_of
from sae_models.stats import tau_inference


@dataclass
class RankRow:
    """One row of ``rank_agreement``."""

    comparison: str  # "mu vs g", "mu vs gain", "mu vs g_dtc", and on the toy world "concept_f1 vs ..."
    grouping: str  # overall, architecture, sparsity, model, or psi (one row per axis and Psi)
    group: str
    n: int  # SAEs (psi rows: groups with a tau-b; the Psi row: axes with a psi)
    pairs: int | None
    tau_b: float | None  # exact, from the kendall_tau_b macro (psi rows: the mean over groups)
    ci_low: float | None  # BCa bootstrap, pairs of (x, y) resampled
    ci_high: float | None
    p_value: float | None  # two-sided permutation test
    note: str | None  # why tau_b is null
    controls_included: bool = False  # whether the control twins' SAEs were items (not by default)


RANK_AGREEMENT_SCHEMA = schema_of(RankRow)


def run_rank_agreement(groups: Sequence[dict], items: dict[tuple, tuple[list, list]], psi: Sequence[dict],
              resamples: int, seed: int = 0, controls_included: bool = False) -> list[RankRow]:
    """``groups``: the rows of sql/rank_agreement.sql; ``items``: (comparison, grouping, group) -> (x, y), the
    values each tau-b was computed from; ``psi``: the rows of sql/rank_psi.sql; ``controls_included``: whether
    the control twins' SAEs were among the items."""
    out = []
    for g in groups:
        key = (g["comparison"], g["grouping"], g["group"])
        inference = tau_inference(*items[key], resamples=resamples, seed=seed)
        out.append(RankRow(*key, g["n"], g["pairs"], g["tau_b"], inference.ci_low, inference.ci_high,
                           inference.p_value if g["tau_b"] is not None else None, g["null_reason"], controls_included))
    for p in psi:
        note = None if p["psi"] is not None else "no group with 3 or more SAEs differing along this axis alone"
        if p["axis"] == "Psi" and p["psi"] is not None and p["null_groups"]:
            note = f"the mean of {p['groups']} axes: {p['null_groups']} without a group of 3 or more SAEs left out"
        out.append(RankRow(p["comparison"], "psi", p["axis"], p["groups"], None, p["psi"], None, None, None, note,
                           controls_included))
    return out
