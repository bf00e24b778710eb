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

    def evaluate(self, context) -> dg.AutomationResult:
        from assets.lakehouse.config import ConfigError, load_settings
        from assets.lakehouse.registry import valid_pairs

        try:
            valid = {pair_key(m, v) for m, v in valid_pairs(load_settings())}
        except ConfigError:
            valid = set()  # an invalid lake.toml requests nothing
        true_subset = context.candidate_subset.compute_intersection_with_partition_keys(valid)
        return dg.AutomationResult(context, true_subset=true_subset)


# Eager: run once the inputs land. judge_cache is an external asset that the judge appends to as it goes: it
# is never "materialized", so it must not count as a missing input.
EAGER = dg.AutomationCondition.eager().ignore(dg.AssetSelection.assets("judge_cache"))
# Per-SAE assets: eager, for the valid (model, variant) pairs only.
SWEEP_EAGER = EAGER & InCurrentSweep()
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
