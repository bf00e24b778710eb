"""Settings of the judge (lake.toml's ``[judge]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sae_models.config import Config


class JudgeConfig(Config):
    """Who explains and scores: the toy world's reader, an OpenAI-compatible endpoint or a local transformers
    chat model. The API key is read from the environment variable named here, never stored."""

    backend: Literal["toyworld", "openai", "transformers"] = Field(
        "toyworld", description="toyworld, openai (any compatible endpoint) or transformers (a local chat model)")
    model: str = ""  # e.g. "gpt-4o-mini"; for "transformers" a local directory or hub id
    base_url: str = "https://api.openai.com/v1"  # openai: the endpoint
    api_key_env: str = "OPENAI_API_KEY"  # openai: the variable holding the key (never stored)
    max_concurrency: int = Field(8, ge=1)  # calls in flight
    max_retries: int = Field(4, ge=0)  # per call, with backoff
    timeout_s: float = Field(60.0, gt=0)  # per call
    price_prompt_per_m: float = Field(0.0, ge=0)  # USD per million prompt tokens, for the cost column
    price_completion_per_m: float = Field(0.0, ge=0)  # USD per million completion tokens

    @model_validator(mode="after")
    def _model_named(self) -> JudgeConfig:
        if self.backend != "toyworld" and not self.model:
            raise ValueError(f"backend {self.backend!r} needs a model")
        return self

    def identity(self) -> dict:
        """What decides the judge's answers, as the call cache keys them (backend and model; not the endpoint,
        speed, retries or prices): a fingerprint input."""
        return self.model_dump(include={"backend", "model"})
