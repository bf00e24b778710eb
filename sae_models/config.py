"""The base of every setting: each evaluation, trainer and judge declares its configuration once, as a
frozen pydantic model, and lake.toml's sections are those very models (no second copy to drift)."""

from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    """Strict and immutable: an unknown key is an error naming the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

