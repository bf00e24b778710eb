"""The ``sae_lake`` code location: every Dagster object under ``assets/defs/`` (one folder per domain), plus
the lake resource and the executor of lake.toml's ``[execution]``. Loading it puts the process under
lake.toml's CPU pin (``[reproducibility]``), so ``dagster dev``, its run workers and ``sae-lake demo`` compute
alike. Nothing here lists assets by hand: a new module under defs/ is picked up as it is."""

from pathlib import Path

import dagster as dg

from assets.lakehouse.config import load_settings
from assets.shared.pin import pin_process

_settings = load_settings()
pin_process(_settings)  # before numpy or torch is loaded: OpenBLAS and ATen choose their kernels once

from assets.shared.execution import executor_for  # noqa: E402
from assets.shared.resources import LakeResource  # noqa: E402

defs = dg.Definitions.merge(
    dg.load_from_defs_folder(project_root=Path(__file__).resolve().parent.parent),
    dg.Definitions(resources={"lake": LakeResource()}, executor=executor_for(_settings.execution)),
)
