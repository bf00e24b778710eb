"""The ``sae_lake`` code location: every Dagster object under ``assets/defs/`` (one folder per domain), plus
the lake resource and the executor of lake.toml's ``[execution]``. Loading it puts the process under
lake.toml's CPU pin (``[reproducibility]``), so ``dagster dev``, its run workers and ``sae-lake demo`` compute
alike. Nothing here lists assets by hand: a new module under defs/ is picked up as it is."""

from functools import cache
from pathlib import Path

import dagster as dg

from assets.lakehouse.config import load_settings
from assets.shared.pin import pin_process

_settings = load_settings()
pin_process(_settings)  # before numpy or torch is loaded: OpenBLAS and ATen choose their kernels once

from assets.lakehouse.registry import partition_grid_note  # noqa: E402
from assets.shared.execution import executor_for  # noqa: E402
from assets.shared.partitions import model_sae_partitions  # noqa: E402
from assets.shared.resources import LakeResource  # noqa: E402

# The page of the documentation (docs/, `make docs`) that explains each group's assets, and the assets whose
# page is another than their group's.
DOCS_PAGES = {"world": "toy-world.md", "models": "toy-world.md", "activations": "lake.md", "saes": "sweep.md",
              "interpretability": "interpretability.md", "steering": "steering.md", "selection": "selection.md",
              "patching": "patching.md", "analysis": "selection.md", "dashboards": "dashboards.md"}
ASSET_DOCS_PAGES = {"control_contrast": "control.md", "control_separation": "control.md",
                    "instrument_validity": "validity.md", "proxies": "validity.md",
                    "true_interpretability": "validity.md", "true_steerability": "validity.md",
                    "patching_report": "patching.md", "catalog": "lake.md"}


@cache
def _grid_note(patched_only: bool) -> str:
    """One note per pair set, shared by the per-SAE assets instead of recomputed for each."""
    return partition_grid_note(_settings, patched_only)


def _described(spec: dg.AssetSpec) -> dg.AssetSpec:
    """The asset's description ends with what its per-SAE partition grid holds that lake.toml never asks for (the
    UI counts those as missing) and with its docs page, which the UI shows beside it."""
    paragraphs = [spec.description or ""]
    if spec.partitions_def == model_sae_partitions:
        paragraphs.append(_grid_note(patched_only=spec.key.to_user_string() == "patching"))
    page = ASSET_DOCS_PAGES.get(spec.key.to_user_string(), DOCS_PAGES.get(spec.group_name or ""))
    if page is not None:
        paragraphs.append(f"Docs: docs/{page}")
        spec = spec.merge_attributes(metadata={"docs": dg.MetadataValue.path(f"docs/{page}")})
    return spec.replace_attributes(description="\n\n".join(p for p in paragraphs if p))


defs = dg.Definitions.merge(
    dg.load_from_defs_folder(project_root=Path(__file__).resolve().parent.parent),
    dg.Definitions(resources={"lake": LakeResource()}, executor=executor_for(_settings.execution)),
).map_asset_specs(func=_described)
