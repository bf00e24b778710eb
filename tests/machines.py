"""Two x86-64 machines as the environment makes them, and a script run in a fresh process on one: the tests of
the CPU pin compare what the same code computes on both."""

import os
import subprocess
import sys
from pathlib import Path

from sae_models.reproducible import CpuPin

ROOT = Path(__file__).resolve().parents[1]
# ATen's SSE kernels, MKL's AVX-512 ones (where the CPU has them) and OpenBLAS's oldest on one thread; ATen's AVX2
# kernels and whatever MKL and OpenBLAS find on the CPU on two.
MACHINES = ({"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
             "OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_NUM_THREADS": "1"},
            {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "2"})
SET_BY_THE_PIN = sorted(set(CpuPin().environment()) - {"ATEN_CPU_CAPABILITY"})


def run_on(machine: dict[str, str], script: str, config: Path, timeout: int = 600) -> str:
    """Run ``script`` in a fresh Python process under ``machine``'s environment and the lake.toml ``config``;
    returns its stdout. The pin's other variables are unset, as a fresh machine has them, unless the machine
    sets them."""
    env = {**os.environ, **machine, "SAE_LAKE_CONFIG": str(config)}
    for name in (*SET_BY_THE_PIN, "SAE_LAKE_ROOT"):
        if name not in machine:
            env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout
