"""Feature selection on hand-made pools: the candidate sets of [W25], the choice on dev reported on test,
the output-score baseline of the same size, the gain."""

import math

import pytest

from sae_models.evals.config import SelectionConfig
from sae_models.evals.selection import (
    PoolLatent,
    _gain,
    candidate_sets,
    dtc_gain,
    dtc_score,
    random_rank_control,
    run_selection,
)
from sae_models.sae.sweep import SAEIdentity

SAE = SAEIdentity("topk", is_baseline=False, level=4.0, target_l0=4.0, l0=3.9)
# latent, DeltaC, S_out, dev, test: latent 1 is best on dev, latent 4 on test; 3 has the top S_out
POOL = [PoolLatent(0, 0.9, 0.1, 0.5, 0.4), PoolLatent(1, 0.5, 0.2, 1.5, 1.0), PoolLatent(2, 0.1, 0.3, 0.2, 0.3),
        PoolLatent(3, -0.2, 0.9, 0.3, 0.2), PoolLatent(4, -0.8, 0.0, 0.4, 1.6), PoolLatent(5, 0.0, 0.5, 0.1, 0.1)]


def test_candidate_sets_rank_both_directions_and_drop_repeats():
    sets = {s.name: s for s in candidate_sets(POOL, SelectionConfig(max_k=2, quantiles=(0.9, 0.6)))}
    assert sets["up-top1"].latents == (0,) and sets["up-top2"].latents == (0, 1)
    assert sets["down-top1"].latents == (4,) and sets["down-top2"].latents == (4, 3)
    assert sets["up-q0.60"].latents == (0, 1, 2)  # DeltaC >= its 0.6 quantile (0.1)
    assert (sets["up-q0.60"].direction, sets["down-q0.60"].direction) == ("up", "down")
    assert sets["down-q0.60"].latents == (4, 3, 5)  # DeltaC <= its 0.4 quantile (0.0)
    assert {"up-q0.90", "down-q0.90"}.isdisjoint(sets)  # the 10% tails are the top-1 sets again
    assert sets["up-top2"].dev == pytest.approx(1.0) and sets["up-top2"].test == pytest.approx(0.7)


def test_the_set_is_chosen_on_dev_reported_on_test_beside_the_optimistic_choice_and_the_output_score():
    result = run_selection(POOL, SelectionConfig(max_k=3, quantiles=(0.9,)), SAE)
    summary, sets = result.summary, result.rows
    assert summary.chosen_set == "up-top2" and summary.chosen_latents == [0, 1]  # dev mean 1.0: the best
    assert summary.g_dtc == pytest.approx(0.7) and summary.size == 2 and summary.direction == "up"
    assert summary.chosen_on_test_set == "down-top1" and summary.g_dtc_chosen_on_test == pytest.approx(1.6)
    assert summary.g == pytest.approx(sum(p.test_hm for p in POOL) / 6)
    assert summary.g_out == pytest.approx((0.2 + 0.1) / 2)  # latents 3 and 5: the top two by S_out
    assert summary.gain == pytest.approx(100 * (0.7 - summary.g) / summary.g)
    assert summary.gain_out == pytest.approx(100 * (summary.g_out - summary.g) / summary.g)
    assert summary.identity == SAE
    assert summary.n_pool == 6 and summary.n_candidates == len(sets)


def test_ties_on_dev_take_the_smaller_set_and_an_empty_pool_gives_nulls():
    flat = [PoolLatent(i, float(i), 0.0, 1.0, float(i)) for i in range(4)]
    result = run_selection(flat, SelectionConfig(), SAE)
    summary = result.summary
    assert summary.size == 1 and summary.chosen_set == "up-top1"
    result = run_selection([], SelectionConfig(), SAE)
    empty, sets = result.summary, result.rows
    assert empty.g is None and empty.g_dtc is None and empty.gain is None and sets == []
    assert (empty.identity, empty.chosen_latents, empty.size, empty.n_pool, empty.n_candidates) == (SAE, [], 0, 0, 0)


def test_the_random_rank_control_gains_from_the_dev_choice_alone_and_ignores_delta_c():
    """A pool where dev predicts test perfectly: choosing the best set on dev gains without any DeltaC signal,
    and the control sees that gain whatever DeltaC says (it never reads it)."""
    pool = [PoolLatent(i, float(i), 0.0, dev_hm=float(i % 3), test_hm=float(i % 3)) for i in range(8)]
    reversed_dc = [PoolLatent(p.latent, -p.delta_c, 0.0, p.dev_hm, p.test_hm) for p in pool]
    cfg = SelectionConfig()
    control = random_rank_control(pool, cfg)
    g = sum(p.test_hm for p in pool) / len(pool)
    assert control > g + 0.3  # the dev choice alone lifts the test score
    assert control == pytest.approx(random_rank_control(reversed_dc, cfg))
    assert control == random_rank_control(pool, cfg, draws=64, seed=0)  # the defaults: 64 draws from seed 0
    result = run_selection(pool, cfg, SAE)
    summary = result.summary
    assert summary.g_random_rank == pytest.approx(control)


def test_the_gain_is_relative_to_g_and_undefined_without_one():
    cfg = SelectionConfig(max_k=3, quantiles=(0.9,))
    summary = run_selection(POOL, cfg, SAE).summary
    assert dtc_score(POOL, cfg) == summary.g_dtc and dtc_gain(POOL, cfg) == pytest.approx(summary.gain)
    assert _gain(None, 1.0) is None and _gain(1.0, 0.0) is None and _gain(1.5, 1.0) == pytest.approx(50.0)
    flat = [PoolLatent(i, float(i), 0.0, 1.0, 0.0) for i in range(4)]  # g = 0: no relative gain
    assert run_selection(flat, cfg, SAE).summary.gain is None and math.isnan(dtc_gain(flat, cfg))
