"""lake.toml: the lake root, the corpus, extraction settings and the model registry, validated on load.

Every problem is reported as one ``ConfigError`` line naming the field, e.g.
``lake.toml: models[1].layer: layer 9 is out of range for toy-qwen2 (4 layers: 0..3)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_ENV = "SAE_LAKE_CONFIG"
ROOT_ENV = "SAE_LAKE_ROOT"
SLUG = re.compile(r"^[a-z0-9._-]+$")
TOYWORLD = "toyworld"


def _check_slug(value: str, field: str) -> str:
    if not SLUG.match(value):
        raise ValueError(f"{field} {value!r} must match [a-z0-9._-]+ (e.g. gemma-2-2b for google/gemma-2-2b)")
    return value


class ConfigError(ValueError):
    """lake.toml is missing, unparsable or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LakeSection(_Strict):
    root: str = "lake"


class CorpusSection(_Strict):
    source: str = TOYWORLD  # "toyworld", or a local .txt (one document per line) / .parquet (column `text`)
    seed: int = 0
    lm_train_docs: int = Field(12000, ge=1)
    lm_eval_docs: int = Field(1000, ge=1)
    activation_docs: int = Field(6000, ge=1)


class ExtractionSection(_Strict):
    batch_size: int = Field(64, ge=1)
    context: int = Field(128, ge=2)
    act_dtype: Literal["float16", "float32"] = "float16"
    drop_outlier_norm: float = Field(0.0, ge=0)
    row_group_mb: float = Field(32.0, gt=0)


class ToyModelSection(_Strict):
    """Size and training of a toy-world model (see ``sae_models.toyworld.ToyModelConfig``)."""

    family: Literal["gemma2", "qwen2"] = "gemma2"
    hidden: int = Field(64, ge=8)
    layers: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    kv_heads: int = Field(2, ge=1)
    intermediate: int = Field(256, ge=8)
    context: int = Field(96, ge=8)
    steps: int = Field(1200, ge=1)
    batch: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    seed: int = 0


class ModelEntry(_Strict):
    slug: str
    source: str  # "toyworld", a hub id (google/gemma-2-2b) or a local directory
    revision: str | None = None
    layer: int = Field(ge=0)
    hook: Literal["resid_post", "mlp_out", "attn_out"] = "resid_post"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    tokens: int = Field(ge=1)  # activation token budget
    trust_remote_code: bool = False
    toy: ToyModelSection | None = None

    _slug = field_validator("slug")(lambda v: _check_slug(v, "slug"))

    @model_validator(mode="after")
    def _layer_in_range(self) -> ModelEntry:
        if self.is_toy and self.toy is None:
            object.__setattr__(self, "toy", ToyModelSection())
        if not self.is_toy and self.toy is not None:
            raise ValueError(f"{self.slug}: a [models.toy] table is only for source = {TOYWORLD!r}")
        n_layers = self.known_n_layers()
        if n_layers is not None and self.layer >= n_layers:
            raise ValueError(f"layer {self.layer} is out of range for {self.slug} "
                             f"({n_layers} layers: 0..{n_layers - 1})")
        return self

    @property
    def is_toy(self) -> bool:
        return self.source == TOYWORLD

    def known_n_layers(self) -> int | None:
        """Layer count when it is known without loading anything (toy, or a local dir's config.json)."""
        if self.toy is not None:
            return self.toy.layers
        cfg = Path(self.source).expanduser() / "config.json"
        if cfg.is_file():
            raw = json.loads(cfg.read_text())
            raw = raw.get("text_config", raw)
            return raw.get("num_hidden_layers", raw.get("n_layer"))
        return None

    def fingerprint(self) -> str:
        """Changes whenever anything that shapes this model's data changes."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class SweepTrainSection(_Strict):
    """SAE training schedule (SPEC §2 gives the paper's; these defaults suit the toy world)."""

    steps: int = Field(1500, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(1e-3, gt=0)
    lr_warmup_steps: int = Field(100, ge=0)
    sparsity_warmup_steps: int = Field(300, ge=0)
    decay_start: float = Field(0.8, ge=0, le=1)
    normalize_activations: bool = True
    dead_tokens: int = Field(200_000, ge=1)  # paper: 10M tokens; scaled down for small runs
    threshold_ema_start: int = Field(150, ge=0)  # BatchTopK; paper: step 1000
    checkpoint_every: int = Field(500, ge=0)
    seed: int = 0


class SweepSection(_Strict):
    """The SAE variants trained for every model: architectures x sparsity levels, plus baselines."""

    architectures: list[Literal["relu", "topk", "batchtopk", "jumprelu", "gated", "tied"]] = Field(
        default_factory=lambda: ["relu", "topk", "batchtopk", "jumprelu", "gated"])
    width_multiple: int = Field(8, ge=1)  # d_sae = width_multiple * d_model
    target_l0: list[int] = Field(default_factory=lambda: [50, 80, 160, 320, 520, 820])  # TopK k, JumpReLU target
    relu_l1: list[float] = Field(default_factory=lambda: [0.012, 0.015, 0.02, 0.03, 0.04, 0.06])
    gated_l1: list[float] = Field(default_factory=lambda: [0.012, 0.018, 0.024, 0.04, 0.06, 0.08])
    tied_l1: list[float] = Field(default_factory=lambda: [0.01, 0.03, 0.1])
    jumprelu_sparsity: float = Field(1.0, gt=0)
    jumprelu_bandwidth: float = Field(0.001, gt=0)
    jumprelu_init_threshold: float = Field(0.001, gt=0)
    baselines: list[Literal["neuron", "random", "pca", "ica"]] = Field(
        default_factory=lambda: ["neuron", "random", "pca", "ica"])
    baseline_fit_tokens: int = Field(50_000, ge=1)
    holdout_fraction: float = Field(0.1, gt=0, lt=1)  # last row groups of the activations, by document
    metric_docs: int = Field(200, ge=1)  # documents for the CE / KL scores
    min_explained_variance: float = Field(0.5, le=1)  # check floor
    train: SweepTrainSection = SweepTrainSection()


class AutointerpSection(_Strict):
    """Latent examples and interpretability scores (SPEC §3); the defaults are SAEBench's."""

    n_latents: int = Field(1000, ge=1)  # scored live latents per SAE
    n_concept: int = Field(100, ge=1)  # CONCEPT100: mu is the mean over this fixed random subset
    seed: int = 0
    threshold: float = Field(0.01, gt=0, lt=1)  # tau = threshold x the latent's max activation
    random_negative: bool = True  # SAEBench: random windows are scored as non-activating
    half_window: int = Field(10, ge=1)  # windows of 2 x half_window + 1 tokens
    n_top: int = Field(12, ge=2)
    n_importance: int = Field(7, ge=0)
    n_random: int = Field(10, ge=1)
    explain_top: int = Field(10, ge=1)
    explain_importance: int = Field(5, ge=0)
    score_top: int = Field(2, ge=1)
    score_importance: int = Field(2, ge=0)
    score_random: int = Field(10, ge=0)
    sim_explain_top: int = Field(5, ge=1)  # [C23]: explanation from 5 top windows,
    sim_top: int = Field(5, ge=1)  # simulated on 5 held-out top windows
    sim_random: int = Field(5, ge=0)  # and 5 random ones

    @model_validator(mode="after")
    def _fits(self) -> AutointerpSection:
        if self.sim_explain_top + self.sim_top > self.n_top or self.sim_random > self.n_random:
            raise ValueError("the [C23] simulation windows (sim_explain_top + sim_top, sim_random) exceed n_top "
                             "or n_random")
        if self.explain_top + self.score_top > self.n_top:
            raise ValueError(f"explain_top + score_top ({self.explain_top + self.score_top}) exceeds n_top "
                             f"({self.n_top})")
        if self.explain_importance + self.score_importance > self.n_importance:
            raise ValueError(f"explain_importance + score_importance exceeds n_importance ({self.n_importance})")
        if self.score_random > self.n_random:
            raise ValueError(f"score_random ({self.score_random}) exceeds n_random ({self.n_random})")
        return self


class JudgeSection(_Strict):
    """Who explains and scores latents: the toy world's reader, an OpenAI-compatible endpoint or a local
    transformers chat model. The API key is read from the environment variable named here, never stored."""

    backend: Literal["toyworld", "openai", "transformers"] = "toyworld"
    model: str = ""  # e.g. "gpt-4o-mini"; for "transformers" a local directory or hub id
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = Field(8, ge=1)
    max_retries: int = Field(4, ge=0)
    timeout_s: float = Field(60.0, gt=0)
    price_prompt_per_m: float = Field(0.0, ge=0)  # USD per million prompt tokens, for the cost column
    price_completion_per_m: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _model_named(self) -> JudgeSection:
        if self.backend != "toyworld" and not self.model:
            raise ValueError(f"backend {self.backend!r} needs a model")
        return self


class ExternalSAE(_Strict):
    """An SAE trained elsewhere, in the SAELens layout (e.g. a downloaded Gemma Scope SAE), evaluated as
    one more variant of ``model``."""

    name: str
    model: str
    path: str

    _name = field_validator("name")(lambda v: _check_slug(v, "name"))


class Settings(_Strict):
    lake: LakeSection = LakeSection()
    corpus: CorpusSection = CorpusSection()
    extraction: ExtractionSection = ExtractionSection()
    sweep: SweepSection = SweepSection()
    autointerp: AutointerpSection = AutointerpSection()
    judge: JudgeSection = JudgeSection()
    models: list[ModelEntry] = Field(default_factory=list)
    external_saes: list[ExternalSAE] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_slugs(self) -> Settings:
        slugs = [m.slug for m in self.models]
        dupes = sorted({s for s in slugs if slugs.count(s) > 1})
        if dupes:
            raise ValueError(f"duplicate model slugs {dupes}")
        for ext in self.external_saes:
            if ext.model not in slugs:
                raise ValueError(f"external SAE {ext.name!r}: model {ext.model!r} is not in the registry")
        return self

    def model(self, slug: str) -> ModelEntry:
        for m in self.models:
            if m.slug == slug:
                return m
        raise ConfigError(f"model {slug!r} is not in the registry (known: {[m.slug for m in self.models]})")


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _one_line(err: dict) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return msg


def config_path(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get(CONFIG_ENV) or "lake.toml").expanduser().resolve()


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Parse and validate lake.toml (``SAE_LAKE_CONFIG`` or ./lake.toml by default)."""
    file = config_path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: configuration file not found (set {CONFIG_ENV} or run from the repo root)")
    try:
        raw = tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file.name}: not valid TOML ({exc})") from exc
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _field_path(err["loc"]) or "(top level)"
        raise ConfigError(f"{file.name}: {where}: {_one_line(err)}") from None


def lake_root(settings: Settings, path: str | os.PathLike | None = None) -> Path:
    """The lake folder: ``SAE_LAKE_ROOT`` if set, else ``[lake].root`` relative to lake.toml's folder."""
    root = os.environ.get(ROOT_ENV) or settings.lake.root
    return (config_path(path).parent / Path(root).expanduser()).resolve()
