"""Partitions: one per registered model; the registry sensor keeps them in step with lake.toml."""

import dagster as dg

models_partitions = dg.DynamicPartitionsDefinition(name="models")
