"""Sparse autoencoders: five architectures plus the tied [C23] variant, baseline dictionaries, training,
SAELens-format checkpoints and core metrics."""

from sae_models._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "SAEConfig": "base", "SAEConfigError": "base", "SparseAutoencoder": "base",
    "BASELINES": "baselines", "BaselineDictionary": "baselines",
    "SAECheckpointError": "io", "load_sae": "io", "save_sae": "io",
    "ARCHITECTURES": "registry", "build_sae": "registry",
    "SweepConfig": "config", "TrainConfig": "config",
})
