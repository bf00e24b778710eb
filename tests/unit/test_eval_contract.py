"""Every evaluation of ``sae_models.evals`` has the same shape: a config, a ``run_*`` entry point, a typed result.
The per-SAE runs return rows and a summary; the analyses across SAEs return their table's rows."""

import dataclasses
import importlib
import inspect
import pkgutil
import typing

import numpy as np

import sae_models.evals

# module -> its entry points (autointerp and steering are two runs each: gather then score, generate then rate)
PER_SAE = {"autointerp": ("run_latent_examples", "run_autointerp"), "feature_scores": ("run_feature_scores",),
           "selection": ("run_selection",), "patching": ("run_patching",),
           "steering": ("run_steering_generation", "run_steering_rating"), "control": ("run_control",),
           "profiles": ("run_latent_profiles",)}
ACROSS_SAES = {"proxies": "run_proxies", "reliability": "run_reliability", "rank_agreement": "run_rank_agreement",
               "validity": "run_validity"}
NOT_EVALUATIONS = {"config", "examples", "instructions"}  # settings, the window engine, the instruction sets


def _entry_points(module) -> list[str]:
    return sorted(name for name, f in inspect.getmembers(module, inspect.isfunction)
                  if name.startswith("run_") and f.__module__ == module.__name__)


def test_every_evaluation_module_is_listed_with_its_entry_points():
    modules = {m.name for m in pkgutil.iter_modules(sae_models.evals.__path__)}
    assert modules == set(PER_SAE) | set(ACROSS_SAES) | NOT_EVALUATIONS
    for name in modules - NOT_EVALUATIONS:
        module = importlib.import_module(f"sae_models.evals.{name}")
        wanted = PER_SAE.get(name) or (ACROSS_SAES[name],)
        assert _entry_points(module) == sorted(wanted), name


def test_a_per_sae_run_returns_a_frozen_result_with_rows_and_a_summary():
    for name, runs in PER_SAE.items():
        module = importlib.import_module(f"sae_models.evals.{name}")
        for run in runs:
            result = typing.get_type_hints(getattr(module, run))["return"]
            assert dataclasses.is_dataclass(result) and result.__dataclass_params__.frozen, run
            assert {"rows", "summary"} <= {f.name for f in dataclasses.fields(result)}, run


def test_an_analysis_returns_its_rows():
    for name, run in ACROSS_SAES.items():
        module = importlib.import_module(f"sae_models.evals.{name}")
        result = typing.get_type_hints(getattr(module, run))["return"]
        assert typing.get_origin(result) is list and dataclasses.is_dataclass(typing.get_args(result)[0]), run


# The analyses across SAEs: each run is its per-model function over every model, in model order, and the
# rows do not depend on the order the query returned them in.

def _two_models(make):
    rows = [make("m-b", i) for i in range(6)] + [make("m-a", i) for i in range(6)]
    return rows, list(reversed(rows))


def test_run_proxies_is_model_proxies_per_model_in_model_order():
    from sae_models.evals.proxies import METRICS, TARGETS, model_proxies, run_proxies

    rng = np.random.default_rng(0)
    rows, shuffled = _two_models(lambda m, i: {"model": m, **{k: float(rng.random()) for k in METRICS + TARGETS}})
    expected = [r for m in ("m-a", "m-b") for r in model_proxies(m, [s for s in rows if s["model"] == m], 99)]
    assert run_proxies(rows, 99) == expected
    assert [(r.model, r.metric, r.target) for r in run_proxies(shuffled, 99)] == [
        (r.model, r.metric, r.target) for r in expected]


def test_run_control_is_contrast_then_separations():
    from sae_models.evals.control import PAIR_KEYS, contrast, run_control, separations

    def unit(model, i):
        pair = dict(zip(PAIR_KEYS, (model, f"{model}-random", f"topk-k{i}", "topk", False, float(i), i, 4.0, 4.0),
                        strict=True))
        return {**pair, "metric": "mu", "trained": [0.5 + 0.01 * j + 0.02 * i for j in range(6)],
                "twin": [0.4 + 0.01 * j for j in range(6)], "same_units": False}

    units, _ = _two_models(unit)
    result = run_control(units, 99)
    contrasts = [contrast({k: u[k] for k in PAIR_KEYS}, u["metric"], u["trained"], u["twin"], u["same_units"], 99)
                 for u in units]
    assert result.rows == contrasts and result.summary == separations(contrasts, 99)
    assert [s.model for s in result.summary] == ["m-a", "m-b", "all models"]


def test_run_reliability_builds_each_models_units_and_pools():
    from sae_models.evals.config import SelectionConfig
    from sae_models.evals.reliability import MEAN_INSTRUMENTS, model_reliability, run_reliability
    from sae_models.evals.selection import PoolLatent

    rng = np.random.default_rng(1)
    units = [{"model": m, "instrument": k, "values": rng.random(8).tolist()}
             for m in ("m-b", "m-a") for k in MEAN_INSTRUMENTS for _ in range(5)]
    pool = [{"model": m, "sae": f"s{s}", "latent": j, "delta_c1": float(rng.normal()), "output_score": 0.1,
             "dev_hm": float(rng.random()), "test_hm": float(rng.random())}
            for m in ("m-b", "m-a") for s in range(5) for j in range(8)]
    cfg = SelectionConfig()
    rows = run_reliability(units, pool, cfg, resamples=20)
    expected = []
    for m in ("m-a", "m-b"):
        by = {k: [u["values"] for u in units if u["model"] == m and u["instrument"] == k] for k in MEAN_INSTRUMENTS}
        pools = [[PoolLatent(r["latent"], r["delta_c1"], r["output_score"], r["dev_hm"], r["test_hm"])
                  for r in pool if r["model"] == m and r["sae"] == f"s{s}"] for s in range(5)]
        expected += model_reliability(m, by, pools, cfg, 20)
    assert list(map(repr, rows)) == list(map(repr, expected))  # nan where a bootstrap is degenerate


def test_run_validity_names_each_models_judges_and_the_world():
    from sae_models.evals.validity import INSTRUMENTS, LATENT_GROUPS, TRUTH_OF, corruption_validity, run_validity

    rng = np.random.default_rng(2)
    oracles = [{"model": m, "corruption": level, "judge_model": f"judge-{m}", **{k: float(rng.random())
                                                                               for k in INSTRUMENTS}}
               for m in ("m-b", "m-a") for level in (0.0, 0.5, 1.0) for _ in range(2)]
    truths = set(TRUTH_OF) | set(TRUTH_OF.values())
    saes = [{"model": m, "latents": g, "judge_model": "other" if m == "m-a" and i == 0 else f"judge-{m}",
             **{k: float(rng.random()) for k in truths}}
            for m in ("m-b", "m-a") for g in LATENT_GROUPS for i in range(5)]
    rows = run_validity(oracles, saes, [], [], "world-7", resamples=99)
    first = corruption_validity("m-a", [o["corruption"] for o in oracles if o["model"] == "m-a"],
                                {k: [o[k] for o in oracles if o["model"] == "m-a"] for k in INSTRUMENTS}, 99)
    assert [(r.instrument, r.tau_b, r.p_value) for r in rows[:len(first)]] == [
        (r.instrument, r.tau_b, r.p_value) for r in first]
    assert {r.judge_model for r in rows if r.model == "m-a"} == {"judge-m-a, other"}
    assert {r.judge_model for r in rows if r.model == "m-b"} == {"judge-m-b"}
    assert {r.world_version for r in rows} == {"world-7"}
    for against in ("corruption", "true_interpretability"):
        models = [r.model for r in rows if r.against == against]
        assert models == sorted(models) and set(models) == {"m-a", "m-b"}
