"""Evaluation rows name their SAE by one type, ``SAEIdentity``, whose fields become the same columns in every
table that carries it."""

import dataclasses
import importlib
import pkgutil
import typing

import sae_models
from sae_models.arrow import columns, schema_of, to_table
from sae_models.evals.autointerp import AutointerpSummary
from sae_models.evals.patching import PatchingRow
from sae_models.evals.selection import SELECTION_SCHEMA, SelectionSummary
from sae_models.evals.steering import SteeringSummary
from sae_models.sae.sweep import SAEIdentity, Variant

IDENTITY = [f.name for f in dataclasses.fields(SAEIdentity)]


def test_every_per_sae_evaluation_row_carries_the_identity_as_one_field_flattened_in_place():
    for row_type in (AutointerpSummary, SteeringSummary, SelectionSummary, PatchingRow):
        assert typing.get_type_hints(row_type)["sae"] is SAEIdentity
        names = schema_of(row_type).names
        start = names.index("architecture")
        assert names[start:start + len(IDENTITY)] == IDENTITY and "sae" not in names


def test_no_other_row_type_of_the_library_redeclares_the_identitys_fields():
    for info in pkgutil.walk_packages(sae_models.__path__, "sae_models."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if dataclasses.is_dataclass(obj) and obj is not SAEIdentity and obj.__module__ == info.name:
                own = {f.name for f in dataclasses.fields(obj)}
                assert not set(IDENTITY) <= own, f"{info.name}.{obj.__name__} retypes SAEIdentity's fields"


def test_a_row_with_an_identity_is_written_as_flat_columns():
    identity = SAEIdentity.of(Variant("topk-k8", "topk", 8), l0=7.5)
    assert identity == SAEIdentity("topk", False, 8, 8, 7.5)
    row = SelectionSummary(sae=identity, g=0.5, g_out=None, g_dtc=None, g_dtc_chosen_on_test=None,
                           g_random_rank=None, gain=None, gain_out=None, chosen_set=None, chosen_latents=[3],
                           size=1, direction=None, chosen_on_test_set=None, n_pool=4, n_candidates=2)
    flat = columns(row)
    assert list(flat)[:6] == [*IDENTITY, "g"] and flat["l0"] == 7.5 and flat["chosen_latents"] == [3]
    table = to_table([row], SELECTION_SCHEMA)
    assert table.to_pylist() == [flat]
