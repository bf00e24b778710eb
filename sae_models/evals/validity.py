"""Instruments against known answers: does each SAE-level instrument rank the oracle dictionaries by their
known corruption level, and the SAEs by the world's own truth?

Per model, over its oracle dictionaries (each corruption level x seed), Kendall's tau-b between the level and
the instrument, with the exact two-sided permutation p-value (``sae_models.stats.level_tau_p``: every
distinct arrangement of the levels counted). A working instrument falls as the level rises (tau-b near its
floor: with ties in the levels, |tau-b| cannot reach 1; 5 levels x 3 seeds allow 0.93);
one that cannot rank dictionaries of known quality measures nothing about quality. Never pooled across
models: each model's oracles are their own test.

Per model, over its SAEs (no baselines, twins or oracles), tau-b between each instrument and its judge-free truth
(the interpretability instruments against ``true_interpretability``, the steering ones against
``true_steerability``), with a permutation p and a BCa interval over SAEs: once over all latents, and apart for
the latents a single word explains (where any judge that reads the windows' words is near-circular) and the rest.

An instrument and its truth averaged over the same latents share those latents' noise (for mu and
true_interpretability, the same windows too), which inflates their tau-b. So each truth row also carries the
latent-disjoint tau-b: each SAE's latents split into two random halves, the instrument averaged over one and the
truth over the other (both ways round), tau-b over SAEs, averaged over the splits, with a percentile interval from
resampling the SAEs. That one is the headline: what agrees there is the SAEs, not the draw of their latents.

Config, run, typed output: no settings of its own; ``run_validity`` -> a ``ValidityRow`` per model, instrument,
answer and group of latents (the ``instrument_validity`` table).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sae_models.arrow import schema_of
from sae_models.stats import RESAMPLES, kendall_tau_b, level_tau_p, tau_inference

CORRUPTION = "corruption"
TRUE_INTERPRETABILITY, TRUE_STEERABILITY = "true_interpretability", "true_steerability"
# Higher is better for all, so each should fall with corruption (concept_f1 and the truths: the world's own check
# that the oracles are what they claim).
INSTRUMENTS = ("mu", "mu_balanced", "mu_simulation", "g", "g_lift", "g_dtc", "concept_f1", TRUE_INTERPRETABILITY,
               TRUE_STEERABILITY)
# Over SAEs, each instrument should rise with its truth.
# The world's own answer rides along: its interpretability truth against its steering truth.
TRUTH_OF = {"mu": TRUE_INTERPRETABILITY, "mu_balanced": TRUE_INTERPRETABILITY, "mu_simulation": TRUE_INTERPRETABILITY,
            "g": TRUE_STEERABILITY, "g_lift": TRUE_STEERABILITY, "g_dtc": TRUE_STEERABILITY,
            TRUE_INTERPRETABILITY: TRUE_STEERABILITY}
LATENT_GROUPS = ("all", "single_word", "other")  # which latents both sides average over
DELTA_C = "abs_delta_c"  # |DeltaC|: the size of a latent's effect on the model's confidence, as a ranking of latents
PER_LATENT = "per_latent"  # the latents group of DeltaC's rows: items are latents, not dictionaries


@dataclass
class ValidityRow:
    """One row of ``instrument_validity``: an instrument against a known answer, per model."""

    model: str
    instrument: str  # mu, mu_balanced, mu_simulation, g, g_lift (g - g_unsteered), g_dtc, concept_f1, a truth
    against: str  # corruption (the oracles' known level), true_interpretability or true_steerability (over SAEs)
    latents: str  # all; over SAEs also single_word (latents a single word explains) and other
    n: int  # dictionaries with a value
    levels: int  # distinct values of the answer among them (the corruption levels; the SAEs' truths)
    tau_b: float | None  # a working instrument: near -tau_max (it falls as corruption rises)
    tau_max: float | None  # the largest |tau-b| these tied levels allow to untied scores: sqrt(pairs of
    #                        different levels / pairs); None against true_steerability
    p_value: float | None  # two-sided; exact over the arrangements of the levels, else by 9,999 permutations
    p_exact: bool
    ci_low: float | None = None  # against a truth: 95% BCa interval over SAEs
    ci_high: float | None = None
    tau_disjoint: float | None = None  # against a truth: instrument and truth on disjoint halves of the latents
    disjoint_low: float | None = None  # 95% percentile interval over SAEs of tau_disjoint
    disjoint_high: float | None = None
    latents_per_sae: float | None = None  # against a truth: median latents of the group per SAE (the instrument's)
    judge_model: str | None = None  # the judge and the world the check ran under: a change to either is a new
    world_version: str | None = None  # instrument, and its validity must be measured again


VALIDITY_SCHEMA = schema_of(ValidityRow)


def _tau_max(levels: np.ndarray) -> float | None:
    pairs = len(levels) * (len(levels) - 1) / 2
    tied = sum(n * (n - 1) / 2 for n in np.unique(levels, return_counts=True)[1])
    return float(np.sqrt((pairs - tied) / pairs)) if pairs else None


def corruption_validity(model: str, corruption: Sequence[float], scores: dict[str, Sequence[float | None]],
                        resamples: int = RESAMPLES) -> list[ValidityRow]:
    """Per instrument in ``scores`` (values aligned with ``corruption``, one per oracle dictionary; None where
    the dictionary has no value), tau-b against the corruption level and its p-value."""
    rows = []
    for instrument, values in scores.items():
        keep = [i for i, v in enumerate(values) if v is not None and np.isfinite(v)]
        x = np.asarray([corruption[i] for i in keep], float)
        y = np.asarray([values[i] for i in keep], float)
        defined = len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0
        tau = float(kendall_tau_b(x, y)) if defined else None
        exact = level_tau_p(x, y) if defined else None
        p = exact if exact is not None else (tau_inference(x, y, resamples).p_value if defined else None)
        rows.append(ValidityRow(model, instrument, CORRUPTION, "all", len(x), len(np.unique(x)), tau, _tau_max(x), p,
                                exact is not None))
    return rows


def truth_validity(model: str, latents: str, against: str, truth: Sequence[float | None],
                   scores: dict[str, Sequence[float | None]], resamples: int = RESAMPLES) -> list[ValidityRow]:
    """Per instrument in ``scores`` (one value per SAE, aligned with ``truth``, both averaged over the ``latents``
    group), tau-b against the truth named ``against`` with a permutation p and a BCa interval over the SAEs."""
    rows = []
    for instrument, values in scores.items():
        keep = [i for i, (t, v) in enumerate(zip(truth, values, strict=True))
                if t is not None and v is not None and np.isfinite(t) and np.isfinite(v)]
        x, y = np.asarray([truth[i] for i in keep], float), np.asarray([values[i] for i in keep], float)
        defined = len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0
        tau = float(kendall_tau_b(x, y)) if defined else None
        inference = tau_inference(x, y, resamples) if defined else None
        rows.append(ValidityRow(model, instrument, against, latents, len(x), len(np.unique(x)), tau, None,
                                inference.p_value if inference else None, False,
                                inference.ci_low if inference else None, inference.ci_high if inference else None))
    return rows



DISJOINT_SPLITS = 50


def _half_means(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """[splits, 2] the mean of ``values`` (NaN where a latent has none) over each half of every split, the splits
    given as permutations ``order`` [splits, latents]; NaN for a side with no value."""
    half = order.shape[1] // 2
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty side is NaN, as it should be
        return np.stack([np.nanmean(values[order[:, :half]], axis=1), np.nanmean(values[order[:, half:]], axis=1)],
                        axis=1)


def disjoint_tau(instrument: Sequence[dict[int, float]], truth: Sequence[dict[int, float]],
                 splits: int = DISJOINT_SPLITS, resamples: int = 499, seed: int = 0
                 ) -> tuple[float | None, float | None, float | None]:
    """Tau-b over SAEs between the instrument on one random half of each SAE's latents and the truth on the other,
    both ways round, averaged over ``splits``; and its 95% percentile interval with the SAEs resampled (the splits
    kept). ``instrument[i]`` and ``truth[i]`` map SAE i's latents to their values."""
    rng = np.random.default_rng(seed)
    x, y = [], []
    for units, answer in zip(instrument, truth, strict=True):
        ids = sorted(set(units) | set(answer))
        if len(ids) < 2:
            continue
        order = np.argsort(rng.random((splits, len(ids))), axis=1)  # the same splits for both sides
        x.append(_half_means(np.array([units.get(i, np.nan) for i in ids], float), order))
        y.append(_half_means(np.array([answer.get(i, np.nan) for i in ids], float), order))
    if len(x) < 3:
        return None, None, None
    x, y = np.stack(x, 1), np.stack(y, 1)  # [splits, SAEs, 2]
    pairs = np.concatenate([np.stack([x[..., 0], y[..., 1]], -1), np.stack([x[..., 1], y[..., 0]], -1)])
    keep = ~np.isnan(pairs).any((0, 2))
    pairs = pairs[:, keep]
    n = pairs.shape[1]
    if n < 3:
        return None, None, None
    # a resample of SAEs tied on one side has no tau-b in any split (all NaN): dropped below, without a warning
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        tau = float(np.nanmean(kendall_tau_b(pairs[..., 0], pairs[..., 1])))
        picks = rng.integers(0, n, (resamples, n))
        boot = np.concatenate([np.nanmean(kendall_tau_b(pairs[:, chunk, 0], pairs[:, chunk, 1]), axis=0)
                               for chunk in np.array_split(picks, max(1, resamples // 50))])
    boot = boot[np.isfinite(boot)]
    if not np.isfinite(tau) or not len(boot):
        return None, None, None
    low, high = np.quantile(boot, [0.025, 0.975])
    return tau, float(low), float(high)


def delta_c_validity(model: str, latents: Sequence[dict]) -> list[ValidityRow]:
    """DeltaC as a ranking of latents: tau-b of |DeltaC| against whether an oracle latent was corrupted (over the
    model's oracle latents; a working ranking puts the clean ones first, so tau-b < 0), and against each steered SAE
    latent's true steerability (over the model's SAEs' latents, pooled); each row where the model has such latents.
    Latents are the items; the p-value is scipy's (asymptotic, tie-corrected), which treats them as independent."""
    from scipy.stats import kendalltau

    from sae_models.sae.oracle import corrupted_latents

    oracle = [u for u in latents if u["oracle"] and u["delta_c"] is not None]
    steered = [u for u in latents if not u["oracle"] and u["delta_c"] is not None]
    hit = {u["sae"]: set(corrupted_latents(u["d_sae"], u["corruption"], u["seed"]).tolist()) for u in oracle}
    sides = [(CORRUPTION, [float(u["latent"] in hit[u["sae"]]) for u in oracle], [abs(u["delta_c"]) for u in oracle]),
             (TRUE_STEERABILITY, [u["rise_test"] for u in steered], [abs(u["delta_c"]) for u in steered])]
    rows = []
    for against, truth, values in sides:
        if not truth:  # no oracle latents (no [oracle]) or no steered latents with a truth
            continue
        x, y = np.asarray(truth, float), np.asarray(values, float)
        defined = len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0
        result = kendalltau(x, y) if defined else None
        rows.append(ValidityRow(model, DELTA_C, against, PER_LATENT, len(x), len(np.unique(x)),
                                float(result.statistic) if result else None, None,
                                float(result.pvalue) if result else None, False))
    return rows


def add_disjoint(rows: list[ValidityRow], latents: Sequence[dict]) -> None:
    """Set each truth row's latent-disjoint tau-b (``disjoint_tau``) and the median latents per SAE of its group,
    from ``latents``: the rows of sql/validity_latents.sql (model, sae, latent, single_word, measure, value)."""
    units: dict[tuple, dict[str, dict[int, float]]] = {}
    for u in latents:
        groups = ("all", "single_word" if u["single_word"] else "other")
        for group in groups:
            units.setdefault((u["model"], group, u["measure"]), {}).setdefault(u["sae"], {})[u["latent"]] = u["value"]
    for r in rows:
        if r.against == CORRUPTION or r.instrument == "g_dtc" or r.latents == PER_LATENT:
            continue
        own, truth = units.get((r.model, r.latents, r.instrument), {}), units.get((r.model, r.latents, r.against), {})
        saes = sorted(set(own) & set(truth))
        r.tau_disjoint, r.disjoint_low, r.disjoint_high = disjoint_tau([own[s] for s in saes], [truth[s] for s in saes])
        r.latents_per_sae = float(np.median([len(own[s]) for s in saes])) if saes else None


def run_validity(oracles: Sequence[dict], saes: Sequence[dict], latents: Sequence[dict], delta_c: Sequence[dict],
                 world_version: str | None, resamples: int = RESAMPLES) -> list[ValidityRow]:
    """Every row of ``instrument_validity``, per model: each instrument against its oracles' corruption levels
    (``oracles``: sql/validity_oracles.sql), against its truth over SAEs per group of latents (``saes``:
    sql/validity_truth.sql) with the latent-disjoint tau-b (``latents``: sql/validity_latents.sql), and DeltaC as a
    ranking of latents (``delta_c``: sql/validity_delta_c.sql); each row names the judges its model's scores came
    from (two: a mixed lake, named as such) and the world's version."""
    rows = []
    for model in sorted({o["model"] for o in oracles}):
        mine = [o for o in oracles if o["model"] == model]
        rows += corruption_validity(model, [o["corruption"] for o in mine],
                                    {k: [o[k] for o in mine] for k in INSTRUMENTS}, resamples)
    for model in sorted({s["model"] for s in saes}):
        for group in LATENT_GROUPS:
            mine = [s for s in saes if s["model"] == model and s["latents"] == group]
            for truth in sorted(set(TRUTH_OF.values())):
                instruments = [k for k, t in TRUTH_OF.items() if t == truth and (group == "all" or k != "g_dtc")]
                rows += truth_validity(model, group, truth, [s[truth] for s in mine],
                                       {k: [s[k] for s in mine] for k in instruments}, resamples)
    add_disjoint(rows, latents)
    for model in sorted({u["model"] for u in delta_c}):
        rows += delta_c_validity(model, [u for u in delta_c if u["model"] == model])
    judges: dict[str, set[str]] = {}
    for s in [*oracles, *saes]:
        judges.setdefault(s["model"], set()).add(s["judge_model"])
    for r in rows:
        r.judge_model, r.world_version = ", ".join(sorted(judges.get(r.model, ()))) or None, world_version
    return rows
