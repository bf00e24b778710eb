"""Evaluation rows name their SAE by one type, ``SAEIdentity``, and count their judge's calls by another,
``JudgeStats``: each type's fields become the same columns in every table that carries it."""

import dataclasses
import importlib
import pkgutil
import typing

import pytest

import assets.lakehouse
import sae_models
from sae_models.arrow import columns, schema_of, to_table
from sae_models.evals.autointerp import AutointerpSummary
from sae_models.evals.patching import PatchingRow
from sae_models.evals.selection import SELECTION_SCHEMA, SelectionSummary
from sae_models.evals.steering import SteeringSummary
from sae_models.judges import USAGE_COLUMNS, JudgeStats
from sae_models.sae.sweep import SAEIdentity, Variant

IDENTITY = [f.name for f in dataclasses.fields(SAEIdentity)]
USAGE = list(USAGE_COLUMNS)
FLATTENED = {"identity": IDENTITY, "usage": USAGE}


def test_every_per_sae_evaluation_row_carries_the_identity_as_one_field_flattened_in_its_place():
    for row_type in (AutointerpSummary, SteeringSummary, SelectionSummary, PatchingRow):
        assert typing.get_type_hints(row_type)["identity"] is SAEIdentity
        expected = [name for f in dataclasses.fields(row_type) for name in FLATTENED.get(f.name, [f.name])]
        assert schema_of(row_type).names == expected


def test_both_judged_summaries_end_with_the_same_judge_usage_columns_filled_from_the_judges_counts():
    usage = JudgeStats(calls=3, cached=4, unparseable=1, prompt_tokens=50, completion_tokens=7, cost_usd=0.25)
    for row_type in (AutointerpSummary, SteeringSummary):
        assert typing.get_type_hints(row_type)["usage"] is JudgeStats
        assert schema_of(row_type).names[-len(USAGE):] == USAGE
        row = row_type(**{f.name: None for f in dataclasses.fields(row_type)} | {"usage": usage})
        assert {k: v for k, v in columns(row).items() if k in USAGE} == {
            "judge_calls": 3, "judge_cached": 4, "judge_unparseable": 1, "judge_prompt_tokens": 50,
            "judge_completion_tokens": 7, "judge_cost_usd": 0.25}


def test_the_tables_keep_their_columns_where_the_lake_has_them():
    """Files written before the identity was one type must still conform: its columns in their old places."""
    assert schema_of(AutointerpSummary).names[:8] == ["judge", "judge_model", *IDENTITY, "mu"]
    assert schema_of(SteeringSummary).names[:8] == ["judge", "judge_model", *IDENTITY, "g"]
    assert schema_of(SelectionSummary).names[:6] == [*IDENTITY, "g"]
    assert schema_of(PatchingRow).names[:6] == [*IDENTITY, "threshold"]


def test_the_judged_summaries_columns_are_these_in_this_order():
    """Written out, not derived: a renamed or moved field would change the tables users query."""
    sae = ["architecture", "is_baseline", "level", "target_l0", "l0"]
    usage = ["judge_calls", "judge_cached", "judge_unparseable", "judge_prompt_tokens", "judge_completion_tokens",
             "judge_cost_usd"]
    assert schema_of(AutointerpSummary).names == [
        "judge", "judge_model", *sae, "mu", "mu_always_no", "mu_always_yes", "mu_balanced", "mu_by_activation",
        "mu_by_activation_always_no", "mu_simulation", "mu_all", "n_scored", "n_concept", "n_too_few",
        "purity_spearman", *usage]
    assert schema_of(SteeringSummary).names == [
        "judge", "judge_model", *sae, "g", "g_ci", "g_unsteered", "g_chosen_on_test", "concept", "instruct", "fluency",
        "n_concepts", "n_unexplained", "n_generations", "mean_tokens", "unparseable", *usage]


def test_a_repeated_column_name_is_refused():
    @dataclasses.dataclass
    class Clash:
        identity: SAEIdentity
        l0: float

    with pytest.raises(TypeError, match="a column name repeats"):
        schema_of(Clash)


# sae_summary's columns come from sql/sae_summary.sql, which puts sparsity_index among the identity's columns
SQL_ORDERED = {"SaeSummary"}


def test_no_other_row_type_redeclares_the_identitys_fields():
    packages = [(sae_models.__path__, "sae_models."), (assets.lakehouse.__path__, "assets.lakehouse.")]
    for info in (i for path, prefix in packages for i in pkgutil.walk_packages(path, prefix)):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (dataclasses.is_dataclass(obj) and obj is not SAEIdentity and obj.__module__ == info.name
                    and obj.__name__ not in SQL_ORDERED):
                own = {f.name for f in dataclasses.fields(obj)}
                assert not set(IDENTITY) <= own, f"{info.name}.{obj.__name__} retypes SAEIdentity's fields"


def test_a_row_with_an_identity_is_written_as_flat_columns():
    assert SAEIdentity.of(Variant("relu-0.03", "relu", 0.03), l0=9.0) == SAEIdentity("relu", False, 0.03, None, 9.0)
    assert SAEIdentity.of(Variant("pca", "pca"), l0=64.0) == SAEIdentity("pca", True, None, None, 64.0)
    identity = SAEIdentity.of(Variant("topk-k8", "topk", 8), l0=7.5)
    assert identity == SAEIdentity("topk", False, 8, 8, 7.5)
    row = SelectionSummary(identity=identity, g=0.5, g_out=None, g_dtc=None, g_dtc_chosen_on_test=None,
                           g_random_rank=None, gain=None, gain_out=None, chosen_set=None, chosen_latents=[3],
                           size=1, direction=None, chosen_on_test_set=None, n_pool=4, n_candidates=2)
    flat = columns(row)
    assert list(flat)[:6] == [*IDENTITY, "g"] and flat["l0"] == 7.5 and flat["chosen_latents"] == [3]
    table = to_table([row], SELECTION_SCHEMA)
    assert table.to_pylist() == [flat]
