"""What a setting changes is declared on its field: a field declared ``no_result`` (batch sizes, logging,
checkpoints) is left out of every fingerprint, so changing it reruns nothing; a field declared to shape some
parts (``shapes``) changes the fingerprints of exactly the stages that read those parts; every other field of the
stage sections changes the fingerprint of some partition."""

from pathlib import Path

import pytest
from pydantic import BaseModel

from assets.lakehouse.config import Settings, load_settings
from assets.lakehouse.fingerprints import STAGE, record
from sae_models.config import fields_shaping, no_result, no_result_fields, parts_shaped, shapes
from sae_models.evals.config import AutointerpConfig, PatchingConfig, SelectionConfig, SteeringConfig

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("extraction", "sweep.train", "sweep.stream", "autointerp", "steering", "selection", "patching",
            "dashboards")
# The stages that read each part a field can declare it shapes (the fingerprints' contract); "partitions",
# "checks" and "report" shape no per-SAE table. A dashboard shows every evaluation but the steering truth.
READ_BY = {"examples": {"examples", "scores", "steering", "selection", "window_truth", "dashboards"},
           "concepts": {"generations", "steering", "selection", "truth", "dashboards"},
           "scores": {"scores", "steering", "selection", "window_truth", "dashboards"},
           "generations": {"generations", "steering", "selection", "dashboards"}, "truth": {"truth"},
           "feature_scores": {"feature_scores", "dashboards"}, "selection": {"selection", "dashboards"},
           "patching": {"patching"}, "profiles": {"profiles", "dashboards"}, "dashboards": {"dashboards"},
           "partitions": set(), "checks": set(), "report": set()}


VARIANTS = ("topk-k8", "batchtopk-k8", "jumprelu-t8", "relu-0.1", "gated-0.1", "pca")  # each architecture's


def fingerprints(settings: Settings) -> dict[tuple[str, str], str]:
    return {(asset, variant): record(asset, settings, "toy-gemma2", variant)["fingerprint"]
            for asset in STAGE for variant in VARIANTS}


def with_field(settings: Settings, section: str, name: str, value) -> Settings:
    """``settings`` with one field of a (dotted) section replaced."""
    head, _, rest = section.partition(".")
    config = getattr(settings, head)
    if rest:
        inner = getattr(config, rest)
        return settings.model_copy(update={head: config.model_copy(update={rest: inner.model_copy(
            update={name: value})})})
    return settings.model_copy(update={head: config.model_copy(update={name: value})})


def another(value):
    """A different value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, tuple | list):
        return type(value)([*value, *value[:1]]) if value else type(value)([1])
    return "other" if value is None else None


def section_config(settings: Settings, section: str):
    config = settings
    for part in section.split("."):
        config = getattr(config, part)
    return config


def _read(settings: Settings, section: str) -> Settings:
    """``settings`` under which the fingerprints read ``section``: [sweep.stream] only when the SAEs stream."""
    if section != "sweep.stream":
        return settings
    return settings.model_copy(update={"sweep": settings.sweep.model_copy(update={"source": "stream"})})


def test_no_result_fields_change_no_fingerprint_and_every_other_field_changes_one():
    declared_somewhere = False
    for section in SECTIONS:
        settings = _read(load_settings(ROOT / "lake.toml"), section)
        before = fingerprints(settings)
        config = section_config(settings, section)
        declared = no_result_fields(type(config))
        declared_somewhere |= bool(declared)
        for name in type(config).model_fields:
            moved = _moved(settings, before, section, name)
            if name in declared:
                assert not moved, f"[{section}] {name} is declared to shape no partition, but moves {moved}"
            elif name in parts_shaped(type(config)):
                assert moved == _readers(parts_shaped(type(config))[name]), f"[{section}] {name}"
            else:
                assert moved, f"[{section}] {name} changes no fingerprint: declare it no_result (or say where)"
    assert declared_somewhere


def _moved(settings: Settings, before: dict, section: str, name: str) -> set[str]:
    """The assets whose fingerprint moves when the field ``name`` of ``section`` changes."""
    config = section_config(settings, section)
    edited = with_field(settings, section, name, another(getattr(config, name)))
    return {asset for (asset, _), fp in fingerprints(edited).items() if fp != before[asset, _]}


def _readers(parts: tuple[str, ...]) -> set[str]:
    stages = set().union(*(READ_BY[p] for p in parts))
    return {asset for asset, stage in STAGE.items() if stage in stages}


def test_every_field_of_the_evaluation_sections_declares_what_it_shapes():
    settings = load_settings(ROOT / "lake.toml")
    for section in ("autointerp", "steering", "selection", "patching", "dashboards"):
        config = type(section_config(settings, section))
        undeclared = set(config.model_fields) - set(parts_shaped(config)) - no_result_fields(config)
        assert not undeclared, f"[{section}] declares nothing for {undeclared}"
        assert {p for parts in parts_shaped(config).values() for p in parts} <= set(READ_BY)


class _WithNewFields(SteeringConfig):
    speed_knob: int = no_result(1)
    truth_knob: int = shapes(1, "truth")


def test_a_new_field_takes_the_effect_its_declaration_names():
    """A field added with ``no_result`` moves no fingerprint; one declared to shape the judge-free steering truth
    moves exactly true_steerability's, for every dictionary."""
    plain = load_settings(ROOT / "lake.toml")
    settings = plain.model_copy(update={"steering": _WithNewFields(**plain.steering.model_dump())})
    before = fingerprints(settings)
    assert not _moved(settings, before, "steering", "speed_knob")
    assert _moved(settings, before, "steering", "truth_knob") == {"true_steerability"}


def test_no_result_is_declared_only_where_the_fingerprints_read_it():
    """A ``no_result`` mark on a section the fingerprints do not derive from would promise "reruns nothing"
    without making it so; and the derived sets are the ones the lake was fingerprinted with."""
    settings = load_settings(ROOT / "lake.toml")
    sections = {}
    for name, value in settings:
        if isinstance(value, BaseModel):
            sections[name] = value
            sections |= {f"{name}.{inner}": v for inner, v in value if isinstance(v, BaseModel)}
    marked = {name: no_result_fields(type(config)) for name, config in sections.items()}
    assert {name for name, fields in marked.items() if fields} <= set(SECTIONS)
    assert marked["sweep.train"] == {"checkpoint_every", "log_every", "progress_s"}
    assert marked["sweep.stream"] == {"max_saes_per_pass"}
    assert all(marked[name] == {"batch_size"} for name in ("extraction", "steering", "selection", "patching"))


def test_the_declared_parts_are_the_ones_the_lake_was_fingerprinted_with():
    """The parts as they were kept by hand before the fields declared them: a changed declaration reruns
    partitions of every lake, so it must be meant."""
    examples = {"n_top", "n_importance", "n_random", "half_window", "seed", "n_latents", "explain_top", "score_top",
                "sim_explain_top", "sim_top"}
    assert fields_shaping(AutointerpConfig, "examples") == examples
    assert fields_shaping(AutointerpConfig, "concepts") == examples - {"n_importance", "n_random",
                                                                       "half_window"} | {"n_concept"}
    assert fields_shaping(AutointerpConfig, "scores") == set(AutointerpConfig.model_fields) - examples
    assert fields_shaping(SteeringConfig, "truth") == {"n_concepts", "seed", "factors"}
    assert fields_shaping(SteeringConfig, "generations") == set(SteeringConfig.model_fields) - {"batch_size"}
    assert fields_shaping(SelectionConfig, "feature_scores") == {"prompt", "scale", "rank_k", "lens_top",
                                                                 "zero_others"}
    assert fields_shaping(SelectionConfig, "selection") == set(SelectionConfig.model_fields) - {"batch_size"}
    assert fields_shaping(PatchingConfig, "patching") == set(PatchingConfig.model_fields) - {
        "batch_size", "variants", "min_ioi_accuracy", "report_architecture"}


def test_a_part_no_setting_declares_is_refused():
    from assets.lakehouse.fingerprints import part

    with pytest.raises(KeyError, match="no setting of AutointerpConfig declares that it shapes 'concept'"):
        part(AutointerpConfig(), "concept")
