"""Settings of the SAE sweep (lake.toml's ``[sweep]``) and of its trainer (``[sweep.train]``). The defaults
are the paper's ([W25])."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from sae_models.config import Config, Seed, no_result

# BatchTopK's inference threshold: an EMA of the batch threshold whose window is this fraction of the steps so
# far (rate 1 / (window * step)), so it averages the end of training at any schedule length. The one default of
# both SAEConfig.threshold_window and TrainConfig.threshold_window.
THRESHOLD_WINDOW = 0.05


class TrainConfig(Config):
    """SAE training schedule (lake.toml's ``[sweep.train]``); [W25] give the paper's values."""

    steps: int = Field(2000, ge=1)  # optimiser steps per SAE
    batch_size: int = Field(1024, ge=1)  # paper: 2048 (4096 in the GPU benchmark)
    lr: float = Field(3e-4, gt=0)  # Adam's peak learning rate
    lr_warmup_steps: int = Field(100, ge=0)  # paper: 1000
    decay_start: float = Field(0.8, ge=0, le=1)  # fraction of the steps after which lr decays to zero
    sparsity_warmup_steps: int = Field(500, ge=0)  # paper: 5000
    grad_clip: float = Field(1.0, ge=0)  # gradient norm clip (0: none)
    seed: Seed = 0  # initialisation and batch order
    normalize_activations: bool = True  # scale activations to mean norm sqrt(d)
    dead_tokens: int = Field(10_000_000, ge=1)  # a latent silent this long is dead (AuxK); scale down for small runs
    threshold_window: float = Field(THRESHOLD_WINDOW, gt=0, le=1)  # BatchTopK: EMA window, a fraction of the steps
    checkpoint_every: int = no_result(0, ge=0)  # steps; 0 = no checkpoints
    log_every: int | None = no_result(None, ge=1)  # None: 50 log rows per run
    progress_s: float = no_result(10.0, ge=0)  # seconds between progress lines (0: one per logged step)

    @property
    def log_interval(self) -> int:
        return self.log_every or max(1, self.steps // 50)


class StreamConfig(Config):
    """lake.toml's ``[sweep.stream]``: how the LM's activations reach the SAEs when ``[sweep] source = "stream"``.
    At its fullest the buffer takes 2 x (buffer_tokens + docs_per_forward x context) rows of d_model values."""

    buffer_tokens: int = Field(81_920, ge=2)  # rows of the mixing buffer (SAELens's default)
    docs_per_forward: int = Field(16, ge=1)  # documents per LM forward pass into the buffer
    max_saes_per_pass: int | None = no_result(None, ge=1)  # SAEs one pass trains at once (None: all of a model's);
    #                                                        each sees the same batches whatever its pass's size


class SweepConfig(Config):
    """The SAE variants trained for every model, and what their evaluation reads."""

    architectures: list[Literal["relu", "topk", "batchtopk", "jumprelu", "gated", "tied"]] = Field(
        default_factory=lambda: ["relu", "topk", "batchtopk", "jumprelu", "gated"],
        description="the SAE architectures trained, one file each in sae_models/sae/")
    width_multiple: int = Field(8, ge=1)  # d_sae = width_multiple * d_model
    width: int | None = Field(None, ge=1)  # d_sae itself, in place of width_multiple (the paper: 16,384)
    target_l0: list[int] = Field(default_factory=lambda: [50, 80, 160, 320, 520, 820])  # TopK k, JumpReLU target
    relu_l1: list[float] = Field(default_factory=lambda: [0.012, 0.015, 0.02, 0.03, 0.04, 0.06],
                                 description="L1 coefficients of the ReLU SAEs")
    gated_l1: list[float] = Field(default_factory=lambda: [0.012, 0.018, 0.024, 0.04, 0.06, 0.08],
                                  description="L1 coefficients of the gated SAEs")
    tied_l1: list[float] = Field(default_factory=lambda: [0.01, 0.03, 0.1])  # L1 coefficients of the tied SAEs
    jumprelu_sparsity: float = Field(1.0, gt=0)  # JumpReLU's L0 penalty coefficient
    jumprelu_bandwidth: float = Field(0.001, gt=0)  # JumpReLU's straight-through kernel width
    jumprelu_init_threshold: float = Field(0.001, gt=0)  # JumpReLU's initial threshold
    baselines: list[Literal["neuron", "random", "pca", "ica"]] = Field(
        default_factory=lambda: ["neuron", "random", "pca", "ica"],
        description="dictionaries that are not trained SAEs, evaluated beside them")
    baseline_fit_tokens: int = Field(50_000, ge=1)  # tokens PCA and ICA are fitted on
    holdout_fraction: float = Field(0.1, gt=0, lt=1)  # last row groups of the activations, by document
    metric_docs: int = Field(200, ge=1)  # documents for the CE / KL scores
    min_explained_variance: float = Field(0.5, le=1)  # check floor
    source: Literal["cache", "stream"] = Field(
        "cache", description='where trained SAEs read activations: "cache", the activations table; "stream", the '
                             "LM run over the corpus as training consumes them, one pass for all of a model's SAEs "
                             "(the activations table is then the evaluations' sample only)")
    stream: StreamConfig = StreamConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _batch_fits_the_buffer(self) -> SweepConfig:
        if self.source == "stream" and self.train.batch_size > self.stream.buffer_tokens // 2:
            raise ValueError(f"[sweep.train] batch_size {self.train.batch_size} exceeds half of [sweep.stream] "
                             f"buffer_tokens ({self.stream.buffer_tokens}): each batch comes from half the buffer")
        return self


class OracleConfig(Config):
    """lake.toml's ``[oracle]``: oracle dictionaries (one latent per ground-truth concept, from labelled
    activations) and corrupted copies, for a corpus with labels (the toy world). Each (level, seed) is one
    dictionary ``oracle-<level>-s<seed>``: at level q a seeded random q of its latents read and write a random
    direction instead of their concept's. Default: none."""

    levels: list[float] = Field(default_factory=list)  # fractions of latents corrupted, e.g. [0, 0.25, 0.5, 0.75, 1]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])  # corrupted copies per level

    @field_validator("levels")
    @classmethod
    def _fractions(cls, levels: list[float]) -> list[float]:
        bad = [q for q in levels if not 0.0 <= q <= 1.0]
        if bad:
            raise ValueError(f"levels {bad} are not fractions in [0, 1]")
        return levels

