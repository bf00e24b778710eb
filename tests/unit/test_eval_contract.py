"""Every evaluation of ``sae_models.evals`` has the same shape: a config, a ``run_*`` entry point, a typed result.
The per-SAE runs return rows and a summary; the analyses across SAEs return their table's rows."""

import dataclasses
import importlib
import inspect
import pkgutil
import typing

import sae_models.evals

# module -> its entry points (autointerp and steering are two runs each: gather then score, generate then rate)
PER_SAE = {"autointerp": ("run_latent_examples", "run_autointerp"), "feature_scores": ("run_feature_scores",),
           "selection": ("run_selection",), "patching": ("run_patching",),
           "steering": ("run_steering_generation", "run_steering_rating"), "control": ("run_control",)}
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
