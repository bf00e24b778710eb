"""Architecture name -> class, and building an SAE from its config."""

from sae_models.sae.base import SAEConfig, SAEConfigError, SparseAutoencoder
from sae_models.sae.baselines import BASELINES, BaselineDictionary
from sae_models.sae.batchtopk import BatchTopKSAE
from sae_models.sae.gated import GatedSAE
from sae_models.sae.jumprelu import JumpReLUSAE
from sae_models.sae.oracle import OracleDictionary
from sae_models.sae.relu import ReLUSAE
from sae_models.sae.tied import TiedSAE
from sae_models.sae.topk import TopKSAE

ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {
    cls.architecture: cls for cls in (ReLUSAE, TopKSAE, BatchTopKSAE, JumpReLUSAE, GatedSAE, TiedSAE,
                                       OracleDictionary)
}


def build_sae(cfg: SAEConfig) -> SparseAutoencoder:
    if cfg.architecture in BASELINES:
        return BaselineDictionary(cfg)
    if cfg.architecture not in ARCHITECTURES:
        raise SAEConfigError(f"architecture {cfg.architecture!r}: expected one of "
                             f"{sorted(ARCHITECTURES) + list(BASELINES)}")
    return ARCHITECTURES[cfg.architecture](cfg)
