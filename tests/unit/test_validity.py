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


def test_the_arrangement_counts_are_exact_beyond_int64_and_end_at_the_most_out_of_order_arrangement():
    sizes = [15, 15, 15]  # every count fits in int64, their sum (45! / 15!^3 ~ 5e19) does not
    counts = inversion_counts(sizes)
    assert sum(counts) == factorial(45) // factorial(15) ** 3
    assert len(counts) == (45 ** 2 - 3 * 15 ** 2) // 2 + 1 and counts[0] == counts[-1] == 1


def test_the_exact_p_takes_levels_and_values_of_any_numeric_type_and_is_none_when_undefined():
    levels, values = np.array([0, 0, 1, 1, 2, 2], dtype=np.uint8), np.array([0.1, 0.4, 0.2, 0.9, 0.6, 1.0])
    assert level_tau_p(levels, values) == pytest.approx(level_tau_p(levels.astype(float), values))
    ranks = np.array([1, 4, 2, 5, 3, 6], dtype=np.uint8)
    assert level_tau_p(levels, ranks) == pytest.approx(level_tau_p(levels, ranks.astype(float)))
    flags = np.array([False, False, False, True, True, True])
    assert level_tau_p(flags, values) == pytest.approx(level_tau_p(flags.astype(float), values))
    assert level_tau_p([0, 1, 2], [0.0, 0.5, 1.0]) == pytest.approx(2 / 6)  # three pairs, values spanning 1
    for levels_, values_ in (([1, 1, 1, 1], [1, 2, 3, 4]), ([1, 2, 3, 4], [1, 2, 2, 3]), ([0, 1], [1, 2])):
        assert level_tau_p(levels_, values_) is None


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


def test_an_instrument_is_held_against_its_own_truth_per_group_of_latents():
    from sae_models.evals.validity import truth_validity

    rng = np.random.default_rng(1)
    truth = list(rng.uniform(size=12))
    rows = truth_validity("m", "other", "true_interpretability", truth,
                          {"mu": [t + rng.normal(0, 0.01) for t in truth], "mu_simulation": list(rng.uniform(size=12))})
    by = {r.instrument: r for r in rows}
    assert {(r.against, r.latents) for r in rows} == {("true_interpretability", "other")}
    assert by["mu"].tau_b > 0.9 and by["mu"].ci_low > 0 and by["mu"].p_value < 0.01
    assert abs(by["mu_simulation"].tau_b) < 0.5


def test_holm_adjusts_the_p_values_step_down_and_leaves_missing_ones_missing():
    from sae_models.evals.proxies import holm

    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert holm([None]) == [None]


def test_a_metric_that_orders_the_saes_by_g_is_found_and_one_that_does_not_is_not():
    from sae_models.evals.proxies import METRICS, TARGETS, model_proxies

    rng = np.random.default_rng(2)
    g = rng.uniform(size=15)
    saes = [{"l0": x, "mu": -x + rng.normal(0, 0.01), "g": x, "true_steerability": None} for x in g]
    for s in saes:
        s["explained_variance"] = rng.uniform()
    rows = {(r.metric, r.target): r for r in model_proxies("m", saes, resamples=999)}
    assert set(rows) == {(m, t) for m in METRICS for t in TARGETS}
    assert rows[("l0", "g")].tau_b == pytest.approx(1.0) and rows[("l0", "g")].p_holm < 0.05
    assert rows[("mu", "g")].tau_b < -0.9
    assert rows[("explained_variance", "g")].p_holm > 0.05
    assert rows[("l0", "true_steerability")].tau_b is None and rows[("l0", "true_steerability")].n == 0
    assert all(r.p_holm >= r.p_value for r in rows.values() if r.p_value is not None)


def test_validity_truth_sql_averages_each_side_over_the_same_latents_per_group():
    import duckdb

    from assets.lakehouse.sql import query_text

    con = duckdb.connect()
    con.execute("CREATE TABLE sae_summary AS SELECT * FROM (VALUES ('m', 's', 0.9::DOUBLE, false, NULL), "
                "('m', 'pca', 0.1, true, NULL)) t(model, sae, g_dtc, is_baseline, control_of)")
    con.execute("CREATE TABLE interpretability AS SELECT 'm' AS model, 's' AS sae, 'reader' AS judge_model")
    # latents 0, 1 token-like (not contextual), 2, 3 contextual; 3 is outside CONCEPT100, 1 has no window truth
    con.execute("CREATE TABLE latent_stats AS SELECT 'm' AS model, 's' AS sae, * FROM (VALUES (0, false), (1, false), "
                "(2, true), (3, true)) t(latent, contextual)")
    con.execute("CREATE TABLE autointerp AS SELECT 'm' AS model, 's' AS sae, * FROM (VALUES (0, 1.0, 0.9, 0.5, true), "
                "(1, 0.0, 0.1, 0.5, true), (2, 0.5, 0.4, 0.2, true), (3, 0.7, 0.7, 0.7, false)) "
                "t(latent, detection_score, detection_balanced, simulation_score, concept100)")
    con.execute("CREATE TABLE true_interpretability AS SELECT 'm' AS model, 's' AS sae, * FROM (VALUES (0, 0.8), "
                "(1, NULL), (2, 0.6), (3, 0.9)) t(latent, true_interpretability)")
    con.execute("CREATE TABLE steering_concepts AS SELECT 'm' AS model, 's' AS sae, * FROM (VALUES (0, 0.4, 0.1), "
                "(2, 0.2, 0.2), (3, 0.6, 0.0)) t(latent, test_hm, unsteered_test_hm)")
    con.execute("CREATE TABLE true_steerability AS SELECT 'm' AS model, 's' AS sae, * FROM (VALUES (0, 0.05), "
                "(2, NULL), (3, 0.01)) t(latent, rise_test)")
    rows = {r["latents"]: r for r in con.sql(query_text("validity_truth")).pl().to_dicts()}
    assert set(rows) == {"all", "single_word", "other"} and {r["sae"] for r in rows.values()} == {"s"}
    assert rows["all"]["mu"] == pytest.approx(0.75) and rows["all"]["true_interpretability"] == pytest.approx(0.7)
    assert rows["single_word"]["mu"] == 1.0 and rows["single_word"]["true_interpretability"] == 0.8
    assert rows["other"]["mu_balanced"] == 0.4 and rows["other"]["true_interpretability"] == 0.6
    assert rows["all"]["g"] == pytest.approx(0.5) and rows["all"]["true_steerability"] == pytest.approx(0.03)
    assert rows["other"]["g_lift"] == pytest.approx(0.6) and rows["single_word"]["g_lift"] == pytest.approx(0.3)
    assert rows["all"]["g_dtc"] == 0.9 and rows["other"]["g_dtc"] is None
    assert rows["all"]["judge_model"] == "reader"


def _rank(comparison, grouping, group, tau, low=None, high=None, p=None, n=20):
    return {"comparison": comparison, "grouping": grouping, "group": group, "n": n, "tau_b": tau, "ci_low": low,
            "ci_high": high, "p_value": p}


def test_the_report_opens_on_the_worlds_answer_beside_the_pipelines_with_their_ceilings():
    from assets.defs.analysis.report_truth import WORLD, world_answer_section

    ranks = [_rank(WORLD, "model", "m", -0.46, -0.66, -0.07, 0.005), _rank(WORLD, "overall", "all", 0.01, n=40),
             _rank("mu vs g", "model", "m", 0.1), _rank("mu vs g", "architecture", "topk", 0.9)]
    reliability = [{"model": "m", "instrument": "true_interpretability", "partner": "true_steerability",
                    "tau_ceiling": 0.09},
                   {"model": "m", "instrument": "mu", "partner": "g", "tau_ceiling": 0.3}]
    text = "\n".join(world_answer_section(ranks, reliability))
    assert text.startswith("## The world's answer and the pipeline's")
    assert "| the world's truth | m | 20 | -0.460 | [-0.66, -0.07] | 0.005 | 0.09 |" in text
    assert "| the pipeline: mu vs g | m | 20 | 0.100 |" in text and "topk" not in text  # per model, not per axis
    assert "Above its ceiling at the point estimates: true_interpretability vs true_steerability on m" in text
    assert "mu vs g on m" not in text  # 0.10 is under its ceiling of 0.30
    assert world_answer_section([_rank("mu vs g", "model", "m", 0.1)], reliability) == []  # no truth: no section


def test_the_disjoint_tau_finds_agreement_between_saes_and_none_in_shared_latent_noise():
    from sae_models.evals.validity import disjoint_tau

    rng = np.random.default_rng(3)
    quality = rng.normal(size=15)
    instrument = [{j: q + rng.normal() for j in range(40)} for q in quality]
    truth = [{j: q + rng.normal() for j in range(40)} for q in quality]
    tau, low, high = disjoint_tau(instrument, truth, splits=20, resamples=200)
    assert tau > 0.6 and low > 0.3 and high <= 1
    # SAEs alike, the instrument and the truth the same noisy latents: the same-latent tau-b is 1, this one is not
    shared = [{j: rng.normal() for j in range(40)} for _ in range(15)]
    means = [np.mean(list(s.values())) for s in shared]
    assert kendall_tau_b(means, means) == pytest.approx(1.0)
    tau, low, high = disjoint_tau(shared, shared, splits=20, resamples=200)
    assert abs(tau) < 0.3 and low < 0 < high
    assert disjoint_tau(shared[:2], shared[:2]) == (None, None, None)  # under 3 SAEs


def test_the_disjoint_tau_drops_resamples_without_a_tau_in_silence():
    """A resample of 3 SAEs that draws one of them 3 times has no tau-b in any split; it is dropped, not warned
    about (a demo would print numpy's warning for it)."""
    import warnings

    from sae_models.evals.validity import disjoint_tau

    rng = np.random.default_rng(5)
    three = [{j: q + rng.normal() for j in range(20)} for q in (0.0, 1.0, 2.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tau, low, high = disjoint_tau(three, three, splits=10, resamples=200)
    assert tau is not None and low <= tau <= high


def test_delta_c_is_held_against_the_oracles_corrupted_latents_and_the_latents_true_steerability():
    from sae_models.evals.validity import DELTA_C, delta_c_validity
    from sae_models.sae.oracle import corrupted_latents

    rng = np.random.default_rng(4)
    latents = []
    for level in (0.25, 0.5, 0.75):
        hit = set(corrupted_latents(20, level, 1).tolist())
        latents += [{"oracle": True, "sae": f"oracle-{level}-s1", "latent": j, "d_sae": 20, "corruption": level,
                     "seed": 1, "delta_c": (0.1 if j in hit else 1.0) * rng.choice([-1, 1]), "rise_test": None}
                    for j in range(20)]
    rises = rng.uniform(size=60)
    latents += [{"oracle": False, "sae": "s", "latent": j, "delta_c": -2 * r, "rise_test": r}
                for j, r in enumerate(rises)]
    corruption, truth = delta_c_validity("m", latents)
    assert (corruption.instrument, corruption.against, corruption.n) == (DELTA_C, "corruption", 60)
    assert corruption.tau_b < -0.8 and corruption.p_value < 1e-6  # |DeltaC| puts the clean latents first
    assert truth.against == "true_steerability" and truth.tau_b == pytest.approx(1.0)  # the size, not the sign
    assert [r.against for r in delta_c_validity("m", [u for u in latents if not u["oracle"]])] == ["true_steerability"]
