"""Row types of the lake tables that SQL computes (sql/sae_summary.sql, sql/selection_lift.sql): the columns
each query's asset writes, declared beside the other tables' schemas (``tables.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from sae_models.arrow import schema_of


@dataclass
class SaeSummary:
    """One row of ``sae_summary`` (sql/sae_summary.sql): every per-SAE score side by side, the rank analysis's items."""

    model: str
    sae: str
    control_of: str | None  # a control twin's dictionary: the trained model the twin copies
    architecture: str
    is_baseline: bool
    level: float | None
    target_l0: float | None
    sparsity_index: int | None  # 1 = the densest SAE of its architecture's grid; null for baselines
    l0: float
    explained_variance: float
    ce_loss_score: float | None
    mu: float | None  # mean detection score of the CONCEPT100 latents
    mu_always_no: float | None  # what answering "no" to every window would score
    mu_simulation: float | None
    g: float | None  # steering utility over the steered concepts
    g_unsteered: float | None  # the same ratings with the factor at 0
    g_out: float | None
    g_dtc: float | None
    g_dtc_chosen_on_test: float | None
    g_random_rank: float | None  # the dev choice among candidate sets without DTC (a random order)
    gain: float | None  # percent
    gain_out: float | None
    selected: int | None  # latents in the chosen DTC set
    concept_f1: float | None  # toy world: the ground truth, mean best F1 over the world's concepts
    concept_f1_swept: float | None
    contextual_share: float | None  # of the CONCEPT100 latents, the share whose token explains under half of
    #                                 their variance (latent_stats.contextual)
    true_interpretability: float | None  # toy world: mean best one-feature detection accuracy over CONCEPT100
    true_steerability: float | None  # toy world: mean judge-free steering effect of the steered latents


SAE_SUMMARY_SCHEMA = schema_of(SaeSummary)


@dataclass
class SelectionLift:
    """One row of ``selection_lift`` (sql/selection_lift.sql), [W25] Table 2: the mean steering score of a
    model's SAEs (or its baseline dictionaries) before and after selection, and the lifts, averaged two ways."""

    model: str  # or "all models"
    dictionaries: str  # "SAEs" or "baselines"
    n: int
    g_unsteered: float | None  # the floor: the same ratings with no steering at all
    g: float | None
    g_out: float | None
    g_dtc: float | None
    g_dtc_chosen_on_test: float | None
    g_random_rank: float | None  # the control: the dev choice among candidate sets without DTC
    lift_out_of_means: float | None  # percent: (mean g_out - mean g) / mean g
    lift_dtc_of_means: float | None
    mean_gain_out: float | None  # percent: the mean over SAEs of (g_out - g) / g
    mean_gain: float | None  # the mean over SAEs of L = (g_dtc - g) / g
    median_gain: float | None
    n_gain: int  # SAEs with a defined L (g > 0)


SELECTION_LIFT_SCHEMA = schema_of(SelectionLift)
