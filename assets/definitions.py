"""The ``sae_lake`` code location: assets, checks, jobs and the registry sensor."""

import dagster as dg

from assets.activations import activations, activations_finite, activations_row_count, activations_width
from assets.autointerp import (
    autointerp_concept_subset_complete,
    autointerp_evaluation,
    autointerp_scores_in_range,
    interpretability_report,
    latent_examples,
)
from assets.catalog import catalog
from assets.corpus import corpus
from assets.models import language_model
from assets.partitions import model_sae_partitions, models_partitions
from assets.registry import MODEL_CHAIN, SAE_SWEEP, model_registry_sensor
from assets.resources import LakeResource
from assets.saes import (
    concept_recovery,
    sae,
    sae_evaluation,
    sae_explained_variance,
    sae_l0_near_target,
    sae_metrics_finite,
)

world_job = dg.define_asset_job("world", selection=[corpus])
model_chain_job = dg.define_asset_job(
    MODEL_CHAIN, selection=[language_model, activations], partitions_def=models_partitions
)
sae_sweep_job = dg.define_asset_job(
    SAE_SWEEP, selection=[sae, sae_evaluation, concept_recovery, latent_examples, autointerp_evaluation],
    partitions_def=model_sae_partitions,
)
catalog_job = dg.define_asset_job("catalog_refresh", selection=[interpretability_report, catalog])
# Evaluates the assets' automation conditions (the catalog refreshes when new partitions land).
automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING
)

defs = dg.Definitions(
    assets=[corpus, language_model, activations, sae, sae_evaluation, concept_recovery, latent_examples,
            autointerp_evaluation, interpretability_report, catalog],
    asset_checks=[activations_finite, activations_width, activations_row_count, sae_metrics_finite,
                  sae_l0_near_target, sae_explained_variance, autointerp_scores_in_range,
                  autointerp_concept_subset_complete],
    jobs=[world_job, model_chain_job, sae_sweep_job, catalog_job],
    sensors=[model_registry_sensor, automation_sensor],
    resources={"lake": LakeResource()},
)
