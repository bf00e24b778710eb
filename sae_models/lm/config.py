"""Settings of activation extraction (lake.toml's ``[extraction]``)."""

from typing import Literal

from pydantic import Field

from sae_models.config import Config, no_result


class ExtractionConfig(Config):
    """lake.toml's ``[extraction]``: how documents are batched, cut and stored (the hook point and the token
    budget come from each model's registry entry)."""

    batch_size: int = no_result(64, ge=1)  # documents per forward pass
    context: int = Field(128, ge=2)  # tokens per document, at most
    act_dtype: Literal["float16", "float32"] = "float16"  # how activations are stored
    drop_outlier_norm: float = Field(0.0, ge=0)  # 0 keeps every token; e.g. 10 drops tokens above 10x the median
    row_group_mb: float = Field(32.0, gt=0)  # Parquet row groups of the activation shards
