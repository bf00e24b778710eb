"""Partitions: one per registered model, one per SAE variant of the sweep, and their product.

The registry sensor (and ``sae-lake demo``) keep the dynamic sets in step with lake.toml.
"""

import dagster as dg

models_partitions = dg.DynamicPartitionsDefinition(name="models")
saes_partitions = dg.DynamicPartitionsDefinition(name="saes")
model_sae_partitions = dg.MultiPartitionsDefinition({"model": models_partitions, "sae": saes_partitions})


def model_and_sae(context) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["model"], keys["sae"]
