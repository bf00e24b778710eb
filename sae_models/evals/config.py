"""Settings of every evaluation, one class each (lake.toml's section of the same name); SAEBench's and the
papers' values by default.

Each setting that shapes results names the parts it shapes (``shapes``): ``examples`` (the windows gathered per
latent), ``concepts`` (the CONCEPT100 set and the steered latents), ``scores`` (the judge's explanations and
scores), ``generations`` (the steered generations), ``truth`` (the judge-free steering truth),
``feature_scores``, ``selection``, ``patching``; and, shaping no per-SAE table, ``partitions`` (which
dictionaries run), ``checks`` and ``report``. Speed settings are ``no_result``."""

from __future__ import annotations

import math

from pydantic import Field, model_validator

from sae_models.config import Config, Seed, matches_any, no_result, shapes


class ExampleConfig(Config):
    """Which windows are gathered per latent (SAEBench's counts by default)."""

    n_top: int = shapes(12, "examples", "concepts", ge=1)  # top-activating windows per latent
    n_importance: int = shapes(7, "examples", ge=0)  # importance-weighted windows per latent
    n_random: int = shapes(10, "examples", ge=1)  # random windows per latent
    half_window: int = shapes(10, "examples", ge=1)  # windows of 2 x half_window + 1 tokens
    seed: Seed = shapes(0, "examples", "concepts")  # which windows are drawn

    @property
    def width(self) -> int:
        return 2 * self.half_window + 1


class AutointerpConfig(ExampleConfig):
    """lake.toml's ``[autointerp]``: the windows gathered (``ExampleConfig``), how they are split between
    explaining and scoring, and the scored set; SAEBench's values by default."""

    n_latents: int = shapes(1000, "examples", "concepts", ge=1)  # scored live latents per SAE (all when fewer)
    n_concept: int = shapes(100, "concepts", "scores", ge=1)  # CONCEPT100: the fixed random subset whose mean is mu
    threshold: float = shapes(0.01, "scores", gt=0, lt=1)  # tau = threshold x the latent's max activation
    random_negative: bool = shapes(True, "scores")  # SAEBench: random windows count as non-activating, always
    explain_top: int = shapes(10, "examples", "concepts", ge=1)  # top windows the explanation is written from
    explain_importance: int = shapes(5, "scores", ge=0)  # importance-weighted windows the explanation is from
    score_top: int = shapes(2, "examples", "concepts", ge=1)  # held-out top windows scored
    score_importance: int = shapes(2, "scores", ge=0)  # held-out importance-weighted windows scored
    score_random: int = shapes(10, "scores", ge=0)  # random windows scored (negatives)
    sim_explain_top: int = shapes(5, "examples", "concepts", ge=1)  # [C23]: explanation from 5 top windows,
    sim_top: int = shapes(5, "examples", "concepts", ge=1)  # simulated on 5 held-out top windows
    sim_random: int = shapes(5, "scores", ge=0)  # and 5 random ones

    @model_validator(mode="after")
    def _fits(self) -> AutointerpConfig:
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


class SteeringConfig(Config):
    """lake.toml's ``[steering]``: AxBench's concept steering at the paper's sizes by default.

    ``instructions``: "auto" (the toy world's topic questions for toy models, the bundled general set
    otherwise), "toyworld", "bundled", or the path of a JSONL (one ``{"instruction": ...}`` per line) or
    Parquet (column ``instruction``) file."""

    n_concepts: int = shapes(100, "generations", "truth", ge=1)
    # steered latents: a seeded random n of CONCEPT100 (all of it by default)
    factors: tuple[float, ...] = shapes((0.2, 0.5, 1.0, 2.0, 3.0, 5.0), "generations", "truth")
    # x m_f; AxBench sweeps [0.2, 5]
    instructions: str = shapes("auto", "generations")  # auto, toyworld, bundled, or a .jsonl / .parquet path
    instructions_per_concept: int = shapes(10, "generations", ge=2)
    # per steered latent; the first dev_instructions are dev
    dev_instructions: int = shapes(5, "generations", ge=1)  # the rest are the test half
    max_new_tokens: int = shapes(128, "generations", ge=1)  # tokens generated per answer
    temperature: float = shapes(1.0, "generations", ge=0)  # AxBench samples at 1.0; 0 is greedy
    chat_template: bool = shapes(True, "generations")  # format instructions with the model's chat template, if any
    batch_size: int = no_result(64, ge=1)  # rows per generate call
    seed: Seed = shapes(0, "generations", "truth")  # which concepts and instructions; sampling streams

    @model_validator(mode="after")
    def _valid(self) -> SteeringConfig:
        if not self.factors:
            raise ValueError("factors is empty: give at least one steering factor")
        bad = [f for f in self.factors if not math.isfinite(f) or f <= 0]
        if bad:
            raise ValueError(f"factors {bad}: every steering factor must be a finite number > 0 (the unsteered "
                             "generation, factor 0, is always made)")
        if self.dev_instructions >= self.instructions_per_concept:
            raise ValueError(f"dev_instructions ({self.dev_instructions}) leaves no test instruction of "
                             f"instructions_per_concept ({self.instructions_per_concept})")
        return self


class SelectionConfig(Config):
    """lake.toml's ``[selection]``: the per-latent output scores (S_out of [A25], DeltaC of [W25]) and the
    candidate sets that feature selection chooses among; the papers' values by default."""

    prompt: str = shapes("From my experience,", "feature_scores", "selection")
    # the neutral prompt; the intervention is at its last token
    scale: float = shapes(10.0, "feature_scores", "selection", gt=0)  # s (alpha): the code goes up by s x a_max
    rank_k: int = shapes(1, "feature_scores", "selection")  # UP and DOWN rank latents by DeltaC_1 (or DeltaC_5)
    lens_top: int = shapes(20, "feature_scores", "selection", ge=1)  # logit-lens tokens per latent
    zero_others: bool = shapes(False, "feature_scores", "selection")  # also score zeroing every other code
    batch_size: int = no_result(64, ge=1)  # latents per forward
    max_k: int = shapes(5, "selection", ge=1)  # candidate sets: the top K UP and DOWN latents, K = 1..max_k,
    quantiles: tuple[float, ...] = shapes((0.99, 0.95, 0.90, 0.80), "selection")
    # and the mirrored tails beyond these quantiles

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: object) -> object:
        if isinstance(data, dict) and "resamples" in data:
            raise ValueError("resamples: the analysis across SAEs has its own section now; write it as "
                             "[analysis] resamples")
        return data

    @model_validator(mode="after")
    def _valid(self) -> SelectionConfig:
        if self.rank_k not in (1, 5):
            raise ValueError(f"rank_k must be 1 or 5 (DeltaC_1 or DeltaC_5), not {self.rank_k}")
        bad = [q for q in self.quantiles if not 0.5 < q < 1]
        if bad:
            raise ValueError(f"quantiles {bad}: each tail quantile must lie in (0.5, 1)")
        if not self.prompt.strip():
            raise ValueError("prompt is empty: the scores need a neutral prompt to intervene on")
        return self


class PatchingConfig(Config):
    """lake.toml's ``[patching]``: causal localisation by feature patching on IOI prompt pairs ([C23]).

    The latent set is chosen greedily on ``n_pairs`` prompt pairs and its effect measured on ``n_eval_pairs``
    others. ``thresholds`` are KL bounds in nats (KL of the counterfactual run's final-position distribution
    from the patched run's), log-spaced by default from a hundredth of a nat to past the KL of patching
    nothing on a model that solves IOI confidently. Exact greedy dropping costs about n_pairs x n^2 / 2 patched
    runs for n differing latents; ``refresh_every`` > 1 makes it lazy (``patching.greedy_path``), and
    ``variants`` (glob patterns over variant names) limits which dictionaries are patched."""

    n_pairs: int = shapes(8, "patching", ge=1)  # prompt pairs the greedy path is chosen on
    n_eval_pairs: int = shapes(64, "patching", ge=1)  # other prompt pairs the chosen sets are measured on
    thresholds: tuple[float, ...] = shapes(tuple(round(0.01 * 2 ** i, 4) for i in range(10)), "patching")
    # 0.01 .. 5.12 nats
    min_ioi_accuracy: float = shapes(0.8, "checks", ge=0, le=1)
    # below it the model does not solve IOI (chance 0.5)
    variants: tuple[str, ...] = shapes(("*",), "partitions")
    # which dictionaries are patched, e.g. ["topk-*", "pca"]
    report_architecture: str = shapes("topk", "report")
    # the architecture whose sparsity levels the report plots against PCA
    refresh_every: int = shapes(1, "patching", ge=1)
    # 1: exact greedy; k > 1: lazy greedy, all removals scored every k steps
    shortlist: int = shapes(16, "patching", ge=1)
    # lazy greedy: removals scored afresh in between (the lowest last scores)
    batch_size: int = no_result(2048, ge=1)  # patched runs (latent set x prompt pair) per forward pass
    seed: Seed = shapes(0, "patching")  # which IOI prompt pairs

    @model_validator(mode="after")
    def _valid(self) -> PatchingConfig:
        if not self.thresholds:
            raise ValueError("thresholds is empty: give at least one KL threshold")
        bad = [t for t in self.thresholds if not math.isfinite(t) or t <= 0]
        if bad:
            raise ValueError(f"thresholds {bad}: every KL threshold must be a finite number > 0 (nats)")
        if not self.variants:
            raise ValueError("variants is empty: give at least one pattern, e.g. [\"*\"] for every dictionary")
        return self

    def patches(self, variant: str) -> bool:
        """Whether the dictionary ``variant`` is patched."""
        return matches_any(variant, self.variants)


class DashboardConfig(Config):
    """lake.toml's ``[dashboards]``: what each SAE's feature dashboard shows beyond the lake's evaluation tables
    (SAEDashboard's panels by default), and how its pages are split."""

    histogram_bins: int = shapes(50, "profiles", ge=2)  # equal bins of a latent's activation histogram
    histogram_tokens: int = shapes(200_000, "profiles", ge=1)  # held-out tokens the histograms count (at most)
    lens_tokens: int = shapes(10, "profiles", ge=1)  # logit-lens tokens shown per latent, promoted and suppressed
    latents_per_page: int = shapes(256, "dashboards", ge=1)  # latents per data file of a dashboard: what a latent's
    # page loads


class AnalysisConfig(Config):
    """lake.toml's ``[analysis]``: the statistics across SAEs (the rank agreement, the control contrasts, the
    proxies, the instruments' reliability). They are not per-SAE partitions, so they carry no fingerprint: the
    analysis reruns whenever any input changes."""

    resamples: int = Field(9999, ge=99)  # permutations and bootstrap resamples per tau-b, interval and p-value


class ControlConfig(Config):
    """lake.toml's ``[control]``: the random-weights twins. A model with ``control = "random-init"``
    gets a twin with its config and tokenizer and freshly initialised weights; ``variants`` (glob patterns over
    variant names, as ``[patching] variants``) is the part of the sweep the twins get, and the rank analysis
    takes the twins' SAEs as items only with ``in_rank_analysis``."""

    variants: tuple[str, ...] = ("*",)  # the twins' sweep: every [sweep] variant and baseline by default
    in_rank_analysis: bool = False  # the rank analysis over trained models' SAEs only, by default

    @model_validator(mode="after")
    def _valid(self) -> ControlConfig:
        if not self.variants:
            raise ValueError("variants is empty: give at least one pattern, e.g. [\"*\"] for the whole sweep")
        return self

    def sweeps(self, variant: str) -> bool:
        """Whether the twins get the dictionary ``variant``."""
        return matches_any(variant, self.variants)
