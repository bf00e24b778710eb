"""The base of every setting: each evaluation, trainer and judge declares its configuration once, as a
frozen pydantic model, and lake.toml's sections are those very models (no second copy to drift)."""

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

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


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of the glob ``patterns`` (``topk-*``, ``pca``; case-sensitive)."""
    return any(fnmatchcase(name, pattern) for pattern in patterns)
