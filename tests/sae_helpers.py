"""Synthetic activations made of known sparse directions, written as an activation partition."""

from pathlib import Path

import numpy as np
import torch

from sae_models.activation_store import ActivationReader, write_shards
from sae_models.lm.extract import ActivationBatch


def sparse_directions_data(tmp: Path, d: int = 32, n_feat: int = 64, n: int = 40000, seed: int = 0):
    """x = sum of ~4 of ``n_feat`` unit directions with random magnitudes; returns (reader, x, directions)."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_feat, d, generator=g)
    dirs /= dirs.norm(dim=-1, keepdim=True)
    active = (torch.rand(n, n_feat, generator=g) < 4 / n_feat).float()
    x = (active * (torch.rand(n, n_feat, generator=g) * 2 + 0.5)) @ dirs
    ids = np.arange(n)
    write_shards([ActivationBatch(ids, ids.astype(np.int32), ids.astype(np.int32), x.numpy())], tmp, d,
                 "float32", row_group_mb=0.5)
    return ActivationReader(tmp), x, dirs
