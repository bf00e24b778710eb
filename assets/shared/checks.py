"""Blocking checks of one per-SAE table in one step: the partition's table is read once, every check is a
plain function of it, and each keeps its own name, description and result in the UI. A step per check cost
more in Dagster's bookkeeping (events, input versions) than the checks themselves on a toy SAE."""

import inspect
from collections.abc import Callable, Iterator

import dagster as dg

from assets.lakehouse.config import Settings
from assets.shared.partitions import model_and_sae, model_sae_partitions
from assets.shared.resources import LakeResource

Check = Callable[[list[dict], Settings], dg.AssetCheckResult]  # (the partition's rows, settings) -> result


def table_rows(lake: LakeResource, context, table: str) -> list[dict]:
    model, name = model_and_sae(context)
    return lake.lake().read_table(table, model=model, sae=name).to_pylist()


def sae_table_checks(asset: str, *checks: Check) -> dg.AssetChecksDefinition:
    """One blocking check per function of ``checks`` on the (model, sae) partition of ``asset``, run in one
    step. A function takes the partition's rows and the settings, and returns its ``AssetCheckResult``."""
    specs = [dg.AssetCheckSpec(check.__name__, asset=asset, blocking=True, description=inspect.getdoc(check),
                               partitions_def=model_sae_partitions) for check in checks]

    @dg.multi_asset_check(specs=specs, name=f"{asset}_checks")
    def _checks(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> Iterator[dg.AssetCheckResult]:
        rows, settings = table_rows(lake, context, asset), lake.settings()
        for check in checks:
            result = check(rows, settings)
            yield dg.AssetCheckResult(check_name=check.__name__, asset_key=dg.AssetKey(asset), passed=result.passed,
                                      metadata=result.metadata, description=result.description)

    return _checks

