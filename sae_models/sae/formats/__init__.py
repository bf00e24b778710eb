"""Readers of the SAE formats other libraries write, each turning a folder into what a SAELens directory of the
same SAE holds (a config dict and its tensors), which ``sae_models.sae.io.load_sae`` then imports."""
