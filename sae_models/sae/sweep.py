"""The SAE sweep of [W25] as named variants: ``topk-k8``, ``relu-0.03``, ``jumprelu-t16``, ``pca``...

``SweepConfig`` (lake.toml's ``[sweep]``) names architectures x sparsity levels plus the [C23] baseline
dictionaries; ``OracleConfig`` (``[oracle]``) the oracle dictionaries ``oracle-0.25-s1``. Each variant name is a
partition key and maps to an ``SAEConfig`` once the model's width is known. (Light: reading the sweep imports no torch.)
"""

from __future__ import annotations

from dataclasses import dataclass

from sae_models.config import no_result_fields
from sae_models.sae.config import OracleConfig, StreamConfig, SweepConfig, TrainConfig

EXTERNAL = "external"
ORACLE = "oracle"
TARGET_L0_ARCHITECTURES = ("topk", "batchtopk", "jumprelu")


@dataclass(frozen=True)
class Variant:
    name: str
    architecture: str
    level: float | None = None  # k (TopK/BatchTopK), target L0 (JumpReLU), L1 weight (ReLU/Gated/tied)
    path: str | None = None  # external SAEs: their SAELens directory
    model: str | None = None  # external SAEs: the one model they belong to
    corruption: float | None = None  # oracles: the fraction of latents whose directions are random
    seed: int | None = None  # oracles: which random latents and directions
    norm_scaling_factor: float | None = None  # external SAELens SAEs: the activation-norm factor, if configured

    @property
    def is_oracle(self) -> bool:
        return self.architecture == ORACLE

    @property
    def is_external(self) -> bool:
        return self.architecture == EXTERNAL

    @property
    def is_baseline(self) -> bool:
        return self.level is None and not self.is_external

    @property
    def target_l0(self) -> float | None:
        return self.level if self.architecture in TARGET_L0_ARCHITECTURES else None


@dataclass(frozen=True)
class SAEIdentity:
    """What every per-SAE evaluation row says of its SAE: its variant's kind and sparsity setting, and the
    held-out L0 that ``sae_metrics`` measured. A row type holds it as one field, flattened into its columns."""

    architecture: str
    is_baseline: bool
    level: float | None  # k, target L0 or L1 weight; None for baselines and external SAEs
    target_l0: float | None
    l0: float

    @classmethod
    def of(cls, variant: Variant, l0: float) -> SAEIdentity:
        return cls(variant.architecture, variant.is_baseline, variant.level, variant.target_l0, l0)


def sweep_variants(sweep: SweepConfig) -> list[Variant]:
    out: list[Variant] = []
    for arch in sweep.architectures:
        if arch in ("topk", "batchtopk"):
            out += [Variant(f"{arch}-k{k}", arch, k) for k in sweep.target_l0]
        elif arch == "jumprelu":
            out += [Variant(f"jumprelu-t{t}", arch, t) for t in sweep.target_l0]
        else:
            grid = {"relu": sweep.relu_l1, "gated": sweep.gated_l1, "tied": sweep.tied_l1}[arch]
            out += [Variant(f"{arch}-{c:g}", arch, c) for c in grid]
    return out + [Variant(name, name) for name in sweep.baselines]


def oracle_variants(oracle: OracleConfig) -> list[Variant]:
    """``oracle-<level>-s<seed>`` for every level and seed of ``[oracle]``."""
    return [Variant(f"{ORACLE}-{q:g}-s{s}", ORACLE, corruption=q, seed=s) for q in oracle.levels for s in oracle.seeds]


def external_variant(name: str, model: str, path: str, norm_scaling_factor: float | None = None) -> Variant:
    return Variant(name, EXTERNAL, path=path, model=model, norm_scaling_factor=norm_scaling_factor)


def sae_config(variant: Variant, d_model: int, sweep: SweepConfig, metadata: dict):
    """The ``SAEConfig`` of a sweep variant for a model of width ``d_model``."""
    from sae_models.sae.base import SAEConfig  # torch: only once an SAE is built

    if variant.is_baseline:
        return SAEConfig(variant.architecture, d_model, 2 * d_model, metadata=metadata)
    level = variant.level
    common = dict(d_in=d_model, d_sae=sweep.width or sweep.width_multiple * d_model, metadata=metadata,
                  dead_tokens=sweep.train.dead_tokens, threshold_window=sweep.train.threshold_window)
    if variant.architecture in ("topk", "batchtopk"):
        return SAEConfig(variant.architecture, k=int(level), **common)
    if variant.architecture == "jumprelu":
        return SAEConfig("jumprelu", target_l0=level, sparsity_coefficient=sweep.jumprelu_sparsity,
                         jumprelu_bandwidth=sweep.jumprelu_bandwidth,
                         jumprelu_init_threshold=sweep.jumprelu_init_threshold, **common)
    return SAEConfig(variant.architecture, sparsity_coefficient=level, **common)


def _content_stamp(path: str) -> str:
    """Size and modification time of every file of an SAE directory: a new download at the same path shows."""
    from pathlib import Path

    files = sorted(p for p in Path(path).expanduser().glob("*") if p.is_file())
    return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


def variant_settings(variant: Variant, sweep: SweepConfig) -> dict:
    """The settings that shape this variant's SAE (its fingerprint's input): a baseline ignores the training
    schedule, an external SAE everything but its path."""
    if variant.is_external:
        factor = {} if variant.norm_scaling_factor is None else {"norm_scaling_factor": variant.norm_scaling_factor}
        return {"path": variant.path, "files": _content_stamp(variant.path),
                "holdout_fraction": sweep.holdout_fraction, **factor}
    if variant.is_oracle:
        return {"architecture": ORACLE, "corruption": variant.corruption, "seed": variant.seed,
                "baseline_fit_tokens": sweep.baseline_fit_tokens, "holdout_fraction": sweep.holdout_fraction}
    if variant.is_baseline:
        return {"architecture": variant.architecture, "baseline_fit_tokens": sweep.baseline_fit_tokens,
                "seed": sweep.train.seed, "holdout_fraction": sweep.holdout_fraction}
    own = set() if variant.architecture == "batchtopk" else {"threshold_window"}  # BatchTopK's alone
    width = {"width": sweep.width} if sweep.width else {}  # unset, the fingerprints of before it existed
    stream = sweep.stream.model_dump(exclude=no_result_fields(StreamConfig))
    source = {"source": "stream", "stream": stream} if sweep.source == "stream" else {}
    grid = {**sweep.model_dump(include={"width_multiple", "holdout_fraction"}), **width, **source,
            "train": sweep.train.model_dump(exclude=no_result_fields(TrainConfig) | own)}
    if variant.architecture == "jumprelu":
        grid |= sweep.model_dump(include={"jumprelu_sparsity", "jumprelu_bandwidth", "jumprelu_init_threshold"})
    return {"architecture": variant.architecture, "level": variant.level, **grid}
