"""Sparse autoencoders: five architectures plus the tied [C23] variant, baseline dictionaries, training,
SAELens-format checkpoints and core metrics."""

from sae_models.sae.base import SAEConfig, SAEConfigError, SparseAutoencoder
from sae_models.sae.baselines import BASELINES, BaselineDictionary
from sae_models.sae.io import SAECheckpointError, load_sae, save_sae
from sae_models.sae.registry import ARCHITECTURES, build_sae

__all__ = [
    "ARCHITECTURES",
    "BASELINES",
    "BaselineDictionary",
    "SAECheckpointError",
    "SAEConfig",
    "SAEConfigError",
    "SparseAutoencoder",
    "build_sae",
    "load_sae",
    "save_sae",
]
