"""The base of every setting: each evaluation, trainer and judge declares its configuration once, as a
frozen pydantic model, and lake.toml's sections are those very models (no second copy to drift)."""

from collections.abc import Iterable
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    """Strict and immutable: an unknown key is an error naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)



def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of the glob ``patterns`` (``topk-*``, ``pca``; case-sensitive)."""
    return any(fnmatchcase(name, pattern) for pattern in patterns)
