"""The base of every setting: each evaluation, trainer and judge declares its configuration once, as a
frozen pydantic model, and lake.toml's sections are those very models (no second copy to drift)."""

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_SEED = 2**63 - 1


def _seed(value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"seed {value}: a seed is an integer in 0..2**63-1 (what numpy's and torch's generators "
                         "take alike), so no run seeds differently than asked")
    return value


Seed = Annotated[int, AfterValidator(_seed)]


class Config(BaseModel):
    """Strict and immutable: an unknown key is an error naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def no_result(default, **constraints):
    """A setting that changes how fast (or how visibly) a stage runs and never what it writes: batch sizes,
    logging, checkpoints. The settings fingerprints leave such fields out, so changing one reruns nothing, and the
    settings reference says so."""
    return Field(default, json_schema_extra={"no_result": True}, **constraints)


def shapes(default, *parts: str, **constraints):
    """A setting that shapes the named ``parts`` of the results (e.g. ``"examples"``, the windows gathered per
    latent; ``"checks"``, an asset check's verdict): the settings fingerprints take each part's settings from
    these marks, so changing one reruns exactly the partitions that read those parts, and the settings reference
    says which."""
    return Field(default, json_schema_extra={"shapes": parts}, **constraints)


def _marks(config: type[BaseModel], key: str) -> dict[str, object]:
    return {name: field.json_schema_extra[key] for name, field in config.model_fields.items()
            if isinstance(field.json_schema_extra, dict) and key in field.json_schema_extra}


def no_result_fields(config: type[BaseModel]) -> frozenset[str]:
    """The fields of ``config`` declared with ``no_result``."""
    return frozenset(_marks(config, "no_result"))


def fields_shaping(config: type[BaseModel], part: str) -> frozenset[str]:
    """The fields of ``config`` declared to shape ``part`` (with ``shapes``)."""
    return frozenset(name for name, parts in _marks(config, "shapes").items() if part in parts)


def parts_shaped(config: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """Each field of ``config`` declared with ``shapes``, and the parts it shapes."""
    return _marks(config, "shapes")


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of the glob ``patterns`` (``topk-*``, ``pca``; case-sensitive)."""
    return any(fnmatchcase(name, pattern) for pattern in patterns)
