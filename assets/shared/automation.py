"""Automation: every step of the sweep runs by itself once its inputs land, for exactly the (model, variant)
pairs that lake.toml currently asks for; and the sensor that evaluates it all (registered by
``assets/defs/automation.py``)."""

import dagster as dg

from assets.shared.partitions import pair_key


class InCurrentSweep(dg.AutomationCondition):
    """True for the (model, variant) partitions of the current lake.toml: the sweep's variants for every
    model, an external SAE for its own model only. A variant removed from ``[sweep]`` is retired: its
    partitions keep their data and are never requested again (and a new model never gets them)."""

    @property
    def requires_cursor(self) -> bool:
        return False

    @property
    def name(self) -> str:
        return "in_current_sweep"

    @property
    def description(self) -> str:
        return "the (model, variant) pair is in lake.toml's current sweep"

    def pairs(self, settings) -> list[tuple[str, str]]:
        from assets.lakehouse.registry import valid_pairs

        return valid_pairs(settings)

    def evaluate(self, context) -> dg.AutomationResult:
        from assets.lakehouse.config import ConfigError, load_settings

        try:
            valid = {pair_key(m, v) for m, v in self.pairs(load_settings())}
        except ConfigError:
            valid = set()  # an invalid lake.toml requests nothing
        true_subset = context.candidate_subset.compute_intersection_with_partition_keys(valid)
        return dg.AutomationResult(context, true_subset=true_subset)


class PatchedInCurrentSweep(InCurrentSweep):
    """InCurrentSweep, for the variants that ``[patching] variants`` names."""

    @property
    def name(self) -> str:
        return "patched_in_current_sweep"

    @property
    def description(self) -> str:
        return "the (model, variant) pair is in the current sweep and [patching] variants names it"

    def pairs(self, settings) -> list[tuple[str, str]]:
        return [(m, v) for m, v in super().pairs(settings) if settings.patches(m, v)]


class SettingsChanged(dg.AutomationCondition):
    """True for the partitions whose data was built from other settings than lake.toml's current ones (the
    fingerprint stored with the data differs from the one the current settings give; see
    assets/lakehouse/fingerprints.py). Missing partitions and pairs no longer in lake.toml are not."""

    @property
    def requires_cursor(self) -> bool:
        return False

    @property
    def name(self) -> str:
        return "settings_changed"

    @property
    def description(self) -> str:
        return "built from other settings than lake.toml's current ones"

    def evaluate(self, context) -> dg.AutomationResult:
        from assets.lakehouse.config import ConfigError, load_settings, open_lake

        asset = context.key.to_user_string()
        try:
            settings = load_settings()
        except ConfigError:
            return dg.AutomationResult(context, true_subset=context.get_empty_subset())
        lake = open_lake(settings)
        candidates = context.candidate_subset
        if context.partitions_def is None:
            stale = not candidates.is_empty and _changed(lake, settings, asset, None, None)
            return dg.AutomationResult(context, true_subset=candidates if stale else context.get_empty_subset())
        changed = set()
        for key in candidates.expensively_compute_partition_keys():
            model, _, variant = key.partition("|")
            if _changed(lake, settings, asset, model, variant or None):
                changed.add(key)
        return dg.AutomationResult(context, true_subset=candidates.compute_intersection_with_partition_keys(changed))


def _changed(lake, settings, asset: str, model: str | None, variant: str | None) -> bool:
    from assets.lakehouse.config import ConfigError
    from assets.lakehouse.fingerprints import STAGE, fingerprint, recorded_fingerprint, settings_of

    if asset not in STAGE:
        return False  # the judge cache, the catalog, reports: built from their inputs alone
    recorded = recorded_fingerprint(lake, asset, model, variant)
    try:
        current = fingerprint(settings_of(asset, settings, model, variant))
    except (ConfigError, KeyError):
        return False  # a model or variant no longer in lake.toml: retired, not stale
    return recorded is not None and recorded != current


# Rerun a partition when lake.toml's settings for it changed: once everything upstream is current again (the
# stale partitions nearest the root run first; the rest follow as their inputs land), not while it or an
# input runs, and not again after a failed attempt (a manual run clears that).
SETTINGS_CHANGED = (
    SettingsChanged() & ~dg.AutomationCondition.any_deps_match(SettingsChanged())
    & ~dg.AutomationCondition.in_progress() & ~dg.AutomationCondition.newly_requested()
    & ~dg.AutomationCondition.execution_failed() & ~dg.AutomationCondition.any_deps_in_progress()
).with_label("settings_changed")

# Eager: run once the inputs land. judge_cache is an external asset that the judge appends to as it goes: it
# is never "materialized", so it must not count as a missing input.
EAGER = dg.AutomationCondition.eager().ignore(dg.AssetSelection.assets("judge_cache"))
# Per-SAE assets: eager, for the valid (model, variant) pairs only.
SWEEP_EAGER = (EAGER | SETTINGS_CHANGED) & InCurrentSweep()
PATCHING_EAGER = (EAGER | SETTINGS_CHANGED) & PatchedInCurrentSweep()
# Cross-model assets (reports, the catalog): rerun when any input partition updates, once nothing upstream is
# running. Unlike eager they do not wait for every upstream partition: the (model x variant) product always
# holds pairs that are never materialized (a retired variant of a newer model).
ON_ANY_UPDATE = (
    (dg.AutomationCondition.newly_missing() | dg.AutomationCondition.any_deps_updated()).since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress() & ~dg.AutomationCondition.in_progress()
).with_label("on_any_update")

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
    use_user_code_server=True,  # InCurrentSweep reads lake.toml: it must run where the code is
)
