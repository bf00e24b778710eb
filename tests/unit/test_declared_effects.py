"""What a setting changes is declared on its field: a field declared ``no_result`` (batch sizes, logging,
checkpoints) is left out of every fingerprint, so changing it reruns nothing; every other field of the stage
sections changes the fingerprint of some partition, so changing it reruns what it shapes."""

from pathlib import Path

from pydantic import BaseModel

from assets.lakehouse.config import Settings, load_settings
from assets.lakehouse.fingerprints import STAGE, record
from sae_models.config import no_result_fields

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("extraction", "sweep.train", "steering", "selection", "patching")
# Fields that shape no per-SAE partition, though they shape something else: the rank analysis's resamples, which
# dictionaries are patched, the IOI check's bar and the report's plot.
ELSEWHERE = {("selection", "resamples"), ("patching", "variants"), ("patching", "min_ioi_accuracy"),
             ("patching", "report_architecture")}


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


def test_no_result_fields_change_no_fingerprint_and_every_other_field_changes_one():
    settings = load_settings(ROOT / "lake.toml")
    before = fingerprints(settings)
    declared_somewhere = False
    for section in SECTIONS:
        config = section_config(settings, section)
        declared = no_result_fields(type(config))
        declared_somewhere |= bool(declared)
        for name in type(config).model_fields:
            edited = with_field(settings, section, name, another(getattr(config, name)))
            moved = {asset for asset, fp in fingerprints(edited).items() if fp != before[asset]}
            if name in declared or (section, name) in ELSEWHERE:
                assert not moved, f"[{section}] {name} is declared to shape no partition, but moves {moved}"
            else:
                assert moved, f"[{section}] {name} changes no fingerprint: declare it no_result (or say where)"
    assert declared_somewhere


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
    assert all(marked[name] == {"batch_size"} for name in ("extraction", "steering", "selection", "patching"))
