"""lake.toml: the lake root, the corpus, the model registry, and the settings of every stage, validated on load.

Each stage's section is the config class its science code takes (``[sweep]`` is ``SweepConfig``,
``[autointerp]`` is ``AutointerpConfig``, ...), declared once in ``sae_models``.

Every problem is reported as one ``ConfigError`` line naming the field, e.g.
``lake.toml: models[1].layer: layer 9 is out of range for toy-qwen2 (4 layers: 0..3)``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from sae_models.config import Config, Seed
from sae_models.evals.config import (
    AnalysisConfig,
    AutointerpConfig,
    ControlConfig,
    DashboardConfig,
    PatchingConfig,
    SelectionConfig,
    SteeringConfig,
)
from sae_models.judges.config import JudgeConfig
from sae_models.lm.config import ExtractionConfig
from sae_models.reproducible import CpuPin
from sae_models.sae.config import OracleConfig, SweepConfig
from sae_models.toyworld.config import ToyModelConfig

if TYPE_CHECKING:
    from assets.lakehouse.lake import Lake

CONFIG_ENV = "SAE_LAKE_CONFIG"
ROOT_ENV = "SAE_LAKE_ROOT"
SLUG = re.compile(r"^[a-z0-9._-]+$")
TOYWORLD = "toyworld"
RANDOM_INIT = "random-init"
TWIN_SUFFIX = "-random"  # a twin's slug: the trained model's, then this


def _check_slug(value: str, field: str) -> str:
    if not SLUG.match(value):
        raise ValueError(f"{field} {value!r} must match [a-z0-9._-]+ (e.g. gemma-2-2b for google/gemma-2-2b)")
    return value


class ConfigError(ValueError):
    """lake.toml is missing, unparsable or invalid; the message names the field."""


_Strict = Config


class LakeSection(_Strict):
    root: str = "lake"  # a folder (relative to lake.toml), or s3://bucket/prefix
    cache: str = ""  # an object-store lake's local mirror; default $SAE_LAKE_CACHE or ~/.cache/sae-lake
    duckdb_s3: Literal["auto", "fsspec", "httpfs"] = "auto"  # how DuckDB reads an object-store lake
    lease_s: float = Field(60.0, ge=10)  # object-store lake: a writer's hold on a partition, renewed every
    # quarter of it; unrenewed this long (a writer that died or hangs), the next writer takes the partition over
    # (at least 10 s: the store's clock is read in whole seconds)
    lease_wait_s: float = Field(30.0, ge=0)  # object-store lake: how long a second writer of a partition waits
    # for a holder that keeps renewing before it fails naming it; a holder silent for half its lease is waited
    # out until it expires, so at half of lease_s or more a step retried after a crash takes the partition over
    retain_s: float = Field(600.0, ge=0)  # object-store lake: how long a replaced partition's files stay for the
    # queries that started before (the longest query that answers on its first attempt while its tables are
    # rewritten)


class CorpusSection(_Strict):
    source: str = TOYWORLD  # "toyworld", or a local .txt (one document per line) / .parquet (column `text`)
    seed: Seed = 0  # the toy world's generator seed
    lm_train_docs: int = Field(12000, ge=1)  # toy world: documents the toy LMs train on
    lm_eval_docs: int = Field(1000, ge=1)  # held-out documents for lm_eval and the judge-free truths
    activation_docs: int = Field(6000, ge=1)  # documents whose tokens are extracted (up to a model's token budget)


class ModelEntry(_Strict):
    slug: str  # the model's partition key, [a-z0-9._-]+
    source: str  # "toyworld", a hub id (google/gemma-2-2b) or a local directory
    revision: str | None = None  # a hub revision (branch, tag or commit)
    layer: int = Field(ge=0)  # the hook's block, 0-based
    hook: Literal["resid_post", "mlp_out", "attn_out"] = Field(
        "resid_post", description="the site whose activations the SAEs read and write")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # the weights' dtype
    tokens: int = Field(ge=1)  # activation token budget
    trust_remote_code: bool = False  # run a hub model's own code (off: refused)
    d_model: int | None = Field(None, ge=1)  # the model's width, for `sae-lake plan` offline; checked on loading
    toy: ToyModelConfig | None = None
    control: Literal["random-init", "none"] | None = None  # default: "random-init" for toy models, else "none"
    control_seed: Seed | None = None  # the twin's seed; default: a toy model's own training seed (its twin is its
    #                                   initial weights, before training), 0 for other models
    control_of: str | None = None  # a twin's trained model; set by sae-lake, never in lake.toml

    _slug = field_validator("slug")(lambda v: _check_slug(v, "slug"))

    @field_validator("control_of")
    @classmethod
    def _not_by_hand(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(f"{value!r}: control_of is set on the twins sae-lake adds; ask for a twin with "
                             f"control = {RANDOM_INIT!r}")
        return value

    @model_validator(mode="after")
    def _layer_in_range(self) -> ModelEntry:
        if self.is_toy and self.toy is None:
            object.__setattr__(self, "toy", ToyModelConfig())
        if self.control is None:
            object.__setattr__(self, "control", RANDOM_INIT if self.is_toy else "none")
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

    @property
    def in_lake(self) -> bool:
        """Whether the weights live in the lake (a toy model, or any twin) rather than at ``source``."""
        return self.is_toy or self.control_of is not None

    def twin(self) -> ModelEntry | None:
        """The random-weights control of this model, or None without ``control = "random-init"``:
        the same entry under ``<slug>-random``, its weights drawn under ``control_seed`` (resolved: a toy model's
        twin is the very weights its training started from)."""
        if self.control != RANDOM_INIT:
            return None
        seed = self.control_seed if self.control_seed is not None else (self.toy.seed if self.toy else 0)
        return self.model_copy(update={"slug": self.slug + TWIN_SUFFIX, "control": "none",
                                       "control_of": self.slug, "control_seed": seed})

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


class ExternalSAE(_Strict):
    """An SAE trained elsewhere, evaluated as one more variant of ``model``: a folder of SAELens (``cfg.json`` +
    ``sae_weights.safetensors``), Gemma Scope as released (``params.npz``), sparsify (``cfg.json`` +
    ``sae.safetensors``) or a dictionary_learning trainer (``ae.pt`` + ``config.json``)."""

    name: str  # its variant name
    model: str  # the model slug it was trained on
    path: str  # its SAELens, Gemma Scope, sparsify or dictionary_learning folder
    norm_scaling_factor: float | None = Field(None, gt=0)
    # a SAELens SAE trained with normalize_activations expected_average_only_in: the factor its activations were
    # multiplied by, when its folder has no activation_scaler.json (SAELens's pretrained directory lists it)

    _name = field_validator("name")(lambda v: _check_slug(v, "name"))


class ExecutionSection(_Strict):
    """Where a run's steps execute. ``default``: Dagster's own (a process per step under ``dagster dev``, one
    process for ``sae-lake demo``); ``celery``: Celery workers over ``broker`` (GPU steps on the ``gpu`` queue,
    the rest on ``dagster``); ``k8s``: each step a Kubernetes job (GPU steps request a GPU and land on GPU
    nodes). Read when the code location loads."""

    executor: Literal["default", "celery", "k8s"] = "default"  # default, celery or k8s
    broker: str = "redis://localhost:6379/0"  # celery: the broker URL
    backend: str = "redis://localhost:6379/1"  # celery: the result backend URL


class PlanSection(_Strict):
    """Throughputs measured on the machine a run will use, which ``sae-lake plan`` turns into hours (unset: no
    hours). Each is what a benchmark prints for the model's shapes there."""

    lm_tokens_per_s: float | None = Field(None, gt=0)  # activations to the hook: bench/extract.py "extraction"
    sae_tokens_per_s: float | None = Field(None, gt=0)  # one SAE's training steps: bench/train.py, the architecture's
    generated_tokens_per_s: float | None = Field(None, gt=0)  # steered generation: bench/steer.py "tokens/s"


class Settings(_Strict):
    lake: LakeSection = LakeSection()
    corpus: CorpusSection = CorpusSection()
    extraction: ExtractionConfig = ExtractionConfig()
    sweep: SweepConfig = SweepConfig()
    oracle: OracleConfig = OracleConfig()
    autointerp: AutointerpConfig = AutointerpConfig()
    judge: JudgeConfig = JudgeConfig()
    steering: SteeringConfig = SteeringConfig()
    selection: SelectionConfig = SelectionConfig()
    patching: PatchingConfig = PatchingConfig()
    control: ControlConfig = ControlConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    dashboards: DashboardConfig = DashboardConfig()
    execution: ExecutionSection = ExecutionSection()
    plan: PlanSection = PlanSection()
    reproducibility: CpuPin = CpuPin()
    models: list[ModelEntry] = Field(default_factory=list)
    external_saes: list[ExternalSAE] = Field(default_factory=list)

    @property
    def registry(self) -> list[ModelEntry]:
        """Every model the lake holds: lake.toml's, then the control twins they ask for."""
        return self.models + [twin for m in self.models if (twin := m.twin()) is not None]

    @model_validator(mode="after")
    def _unique_slugs(self) -> Settings:
        slugs = [m.slug for m in self.models]
        dupes = sorted({s for s in slugs if slugs.count(s) > 1})
        if dupes:
            raise ValueError(f"duplicate model slugs {dupes}")
        clash = next((t for t in self.registry[len(self.models):] if t.slug in slugs), None)
        if clash is not None:
            raise ValueError(f"model slug {clash.slug!r} is the name of {clash.control_of}'s control twin: rename "
                             f"the model, or set control = \"none\" on {clash.control_of}")
        from sae_models.config import matches_any
        from sae_models.sae.sweep import oracle_variants, sweep_variants

        taken = {v.name for v in sweep_variants(self.sweep)}
        twins = [m.slug for m in self.registry if m.control_of]
        if twins and taken and not any(matches_any(name, self.control.variants) for name in taken):
            raise ValueError(f"[control] variants {list(self.control.variants)} match no variant of [sweep], so the "
                             f"twins {twins} would get no SAE (known: {sorted(taken)})")
        for ext in self.external_saes:
            if ext.model not in slugs:
                raise ValueError(f"external SAE {ext.name!r}: model {ext.model!r} is not in the registry")
            if ext.name in taken:
                raise ValueError(f"external SAE name {ext.name!r} is already a [sweep] variant or another "
                                 "external SAE's name")
            taken.add(ext.name)
        clash = sorted(taken & {v.name for v in oracle_variants(self.oracle)})
        if clash:
            raise ValueError(f"external SAE names {clash} are oracle dictionaries' names ([oracle])")
        return self

    @property
    def has_labels(self) -> bool:
        """Whether the corpus carries ground-truth concept labels (the toy world's does)."""
        return self.corpus.source == TOYWORLD

    def oracle_notice(self) -> str | None:
        """The one line saying why ``[oracle]`` builds nothing, when it asks for oracles the corpus cannot give."""
        if not self.oracle.levels or self.has_labels:
            return None
        models = ", ".join(m.slug for m in self.models)
        return (f"[oracle]: no oracle dictionaries for {models}: the corpus {self.corpus.source!r} has no "
                "ground-truth labels (only the toy world's does); the rest of the pipeline runs")

    @property
    def cpu_pin(self) -> CpuPin | None:
        """The pin of ``[reproducibility]`` when it applies: ``on``, or ``auto`` with only toy models (the toy
        world's results are then the same on any machine; a real model on a GPU is left as it is)."""
        mode = self.reproducibility.pin
        pinned = mode == "on" or (mode == "auto" and all(m.is_toy for m in self.models))
        return self.reproducibility if pinned else None

    def model(self, slug: str) -> ModelEntry:
        for m in self.registry:
            if m.slug == slug:
                return m
        raise ConfigError(f"model {slug!r} is not in the registry (known: {[m.slug for m in self.registry]})")

    def patches(self, model: str, variant: str) -> bool:
        """Whether ``[patching]`` runs on this pair: a variant it names, of a trained model (a twin does not
        solve IOI, so the patching check would refuse it)."""
        return self.patching.patches(variant) and self.model(model).control_of is None


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _one_line(err: dict) -> str:
    """Pydantic's message, with the value that was given when it is a plain one (not a whole table)."""
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key"
    given = err.get("input")
    if isinstance(given, str | int | float | bool) and not err["type"].startswith("value_error"):
        msg = f"{given!r}: {msg}"
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


def lake_root(settings: Settings, path: str | os.PathLike | None = None) -> Path | str:
    """The lake: ``SAE_LAKE_ROOT`` if set, else ``[lake].root``; a folder relative to lake.toml's folder, or an
    object-store URL as it is."""
    from assets.lakehouse.objectstore import is_object_store

    root = os.environ.get(ROOT_ENV) or settings.lake.root
    if is_object_store(root):
        return root
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", root):
        raise ConfigError(f"[lake] root {root!r}: not a folder, and the only object store supported is s3:// "
                          "(lower case; any S3-compatible server through AWS_ENDPOINT_URL)")
    return (config_path(path).parent / Path(root).expanduser()).resolve()


def open_lake(settings: Settings, path: str | os.PathLike | None = None) -> Lake:
    """The lake lake.toml points at (``path``: the lake.toml, default as ``load_settings``)."""
    from assets.lakehouse.lake import Lake
    from assets.lakehouse.objectstore import WritePolicy

    cache = Path(settings.lake.cache).expanduser() if settings.lake.cache else None
    policy = WritePolicy(settings.lake.lease_s, settings.lake.lease_wait_s, settings.lake.retain_s)
    return Lake(lake_root(settings, path), cache=cache, duckdb_s3=settings.lake.duckdb_s3, policy=policy)
