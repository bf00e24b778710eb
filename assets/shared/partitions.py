"""Partitions: one per registered model, one per SAE variant, and their product for per-SAE assets.

The registry sensor (and ``sae-lake demo``) keep the dynamic sets in step with lake.toml. The product holds
pairs that lake.toml does not ask for (a retired variant for a new model, another model's external SAE);
``in_current_sweep`` keeps the automation from ever requesting them.
"""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from assets.lakehouse.config import ModelEntry, Settings
from assets.lakehouse.lake import Lake
from assets.lakehouse.registry import find_variant, model_location
from sae_models.sae.sweep import SAEIdentity, Variant

models_partitions = dg.DynamicPartitionsDefinition(name="models")
saes_partitions = dg.DynamicPartitionsDefinition(name="saes")
model_sae_partitions = dg.MultiPartitionsDefinition({"model": models_partitions, "sae": saes_partitions})


def model_and_sae(context) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["model"], keys["sae"]


def pair_key(model: str, variant: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"model": model, "sae": variant})


@dataclass(frozen=True)
class SweepPartition:
    """One (model, SAE variant) partition with what every per-SAE asset reads about it."""

    model: str
    name: str
    settings: Settings
    lake: Lake
    entry: ModelEntry
    variant: Variant

    @property
    def sae_dir(self) -> Path:
        return self.lake.fetch("saes", model=self.model, sae=self.name)

    def readers(self):
        """(training, held-out) readers over this model's activations."""
        from sae_models.activation_store import ActivationReader, ActivationStoreError

        try:
            reader = ActivationReader(self.lake.fetch("activations", model=self.model))
            return reader.split(self.settings.sweep.holdout_fraction)
        except ActivationStoreError as exc:
            raise dg.Failure(f"activations of {self.model}: {exc}") from None

    def record(self, asset: str) -> dict:
        """The settings ``asset``'s partition is built from, with their fingerprint."""
        from assets.lakehouse.fingerprints import record

        return record(asset, self.settings, self.model, self.name)

    def identity(self) -> SAEIdentity:
        """What every per-SAE evaluation row says of its SAE, with the held-out L0 from ``sae_metrics``."""
        (metrics,) = self.lake.read_table("sae_metrics", model=self.model, sae=self.name).to_pylist()
        return SAEIdentity.of(self.variant, metrics["l0"])

    def load_lm(self):
        """The model, loaded once per process (``shared_lm``) on the accelerator when there is one."""
        from assets.shared.resources import torch_device
        from sae_models.lm import ModelLoadError, shared_lm

        try:
            return shared_lm(model_location(self.entry, self.lake), self.entry.revision, self.entry.dtype,
                             torch_device(), self.entry.trust_remote_code)
        except ModelLoadError as exc:
            raise dg.Failure(str(exc)) from None

    def load_sae(self, device: str = "cpu"):
        from sae_models.sae import SAECheckpointError, load_sae

        try:
            return load_sae(self.sae_dir).to(device)
        except SAECheckpointError as exc:
            raise dg.Failure(f"{self.model} / {self.name}: {exc} (materialize `sae` again to rewrite it)") from None


def sweep_partition(context, lake) -> SweepPartition:
    """The partition's model, variant and settings; a pair lake.toml does not ask for (a retired variant,
    another model's external SAE) fails with one line: automation never requests one."""
    model, name = model_and_sae(context)
    settings = lake.settings()
    try:
        variant = find_variant(settings, model, name)
    except KeyError as exc:
        raise dg.Failure(f"{model} / {name}: {exc.args[0]}; this pair is not part of the current sweep") from None
    return SweepPartition(model, name, settings, lake.lake(), settings.model(model), variant)
