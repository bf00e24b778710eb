"""Dagster resources: the lake (root folder + registry settings from lake.toml), and where GPU steps run."""

from __future__ import annotations

import dagster as dg

from assets.lakehouse.config import Settings, lake_root, load_settings
from assets.lakehouse.lake import Lake

# Op tags that a Kubernetes executor reads to request an accelerator for GPU steps.
GPU_OP_TAGS = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}


class LakeResource(dg.ConfigurableResource):
    """lake.toml and the lake it points at. ``config_file`` empty means $SAE_LAKE_CONFIG or ./lake.toml."""

    config_file: str = ""

    def settings(self) -> Settings:
        return load_settings(self.config_file or None)

    def lake(self) -> Lake:
        return Lake(lake_root(self.settings(), self.config_file or None))


def torch_device() -> str:
    """Where GPU steps run: the accelerator when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
