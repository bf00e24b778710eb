"""Dagster resources: the lake (root folder + registry settings from lake.toml), and where GPU steps run."""

from __future__ import annotations

import dagster as dg

from assets.lakehouse.config import Settings, load_settings, open_lake
from assets.lakehouse.lake import Lake
from assets.shared.pin import pin_process

# Op tags of the GPU steps: Celery workers take them from the `gpu` queue; the Kubernetes executor gives each a
# GPU, schedules it on a GPU node (the label NVIDIA's GPU operator sets) and tolerates the GPU nodes' taint.
GPU_OP_TAGS = {
    "dagster-celery/queue": "gpu",
    "dagster-k8s/config": {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
        "pod_spec_config": {"node_selector": {"nvidia.com/gpu.present": "true"},
                            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                             "effect": "NoSchedule"}]},
    },
}


class LakeResource(dg.ConfigurableResource):
    """lake.toml and the lake it points at. ``config_file`` empty means $SAE_LAKE_CONFIG or ./lake.toml."""

    config_file: str = ""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Every step runs under the settings' CPU pin (kernels and threads), checked before any work."""
        line = pin_process(self.settings(), apply=True)
        if line and context.log is not None:
            context.log.debug(line)

    def settings(self) -> Settings:
        return load_settings(self.config_file or None)

    def lake(self) -> Lake:
        return open_lake(self.settings(), self.config_file or None)


def torch_device() -> str:
    """Where GPU steps run: the accelerator when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"

