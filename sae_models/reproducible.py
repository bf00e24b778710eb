"""Bit-identical CPU results on any x86-64 machine and core count: pin what decides a run's floating point.

The same toy LM trained for 150 steps on one machine gives a different weight hash under each of ATen's CPU
kernel sets (``default``, ``avx2``, ``avx512``) and under 1 or 2 intra-op threads: the kernels' vector width and
the threads' split of each reduction change the order of floating-point sums. So a pinned process
asks for one kernel set from ATen (``ATEN_CPU_CAPABILITY``, read once, when torch first dispatches), MKL
(``MKL_ENABLE_INSTRUCTIONS``, which MKL obeys even where ``MKL_CBWR`` asks for another branch, and ``MKL_CBWR``,
its conditional numerical reproducibility branch: the same code path on Intel and AMD parts)
and oneDNN (``ONEDNN_MAX_CPU_ISA``), the matching kernels and the same thread count from the OpenBLAS that
numpy and scipy bundle (``OPENBLAS_CORETYPE``: a PCA or ICA fit differs in its last bits by both), and a fixed
intra-op thread count, whatever the machine has. A machine that cannot run the asked kernels is refused with
one line, never run with others.

Call ``pin_environment`` before torch is imported (it only sets variables) and ``apply_pin`` once torch is
needed (it sets the threads and checks that ATen really runs the asked kernels).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Literal

from pydantic import Field

from sae_models.config import Config

Capability = Literal["avx2", "default", "avx512"]
# What each of ATen's kernel sets asks of MKL and oneDNN, so all three libraries take the same vector width.
LIBRARY_BRANCH: dict[str, dict[str, str]] = {
    "default": {"MKL_CBWR": "COMPATIBLE", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41",
                "OPENBLAS_CORETYPE": "Prescott"},
    "avx2": {"MKL_CBWR": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell"},
    "avx512": {"MKL_CBWR": "AVX512", "MKL_ENABLE_INSTRUCTIONS": "AVX512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "OPENBLAS_CORETYPE": "SkylakeX"},
}
X86_64 = ("x86_64", "amd64")


class PinError(RuntimeError):
    """The process cannot run the asked kernels or threads; the message says why and what to change."""


class CpuPin(Config):
    """lake.toml's ``[reproducibility]``: one kernel set and one intra-op thread count for every CPU computation
    of a process, so a toy-world run gives the same tables on any x86-64 machine and core count."""

    pin: Literal["auto", "on", "off"] = "auto"  # auto: pinned when every model of the registry is a toy model
    capability: Capability = "avx2"  # ATen's (and MKL's, oneDNN's) kernels: "avx2", or "default" on any x86-64
    threads: int = Field(2, ge=1, le=1024)  # torch's intra-op threads, whatever the machine's core count

    def describe(self) -> str:
        return f"ATen {self.capability} kernels (MKL {LIBRARY_BRANCH[self.capability]['MKL_CBWR']}), " \
               f"{self.threads} intra-op thread{'s' * (self.threads != 1)}"

    def environment(self) -> dict[str, str]:
        return {"ATEN_CPU_CAPABILITY": self.capability, "OPENBLAS_NUM_THREADS": str(self.threads),
                **LIBRARY_BRANCH[self.capability]}


def pin_environment(pin: CpuPin, source: str = "the pin") -> None:
    """Set the variables that choose the kernels, before torch is imported (this process and its children). If
    torch is already imported, its kernels are checked instead: a mismatch is a ``PinError``."""
    if pin.threads < 1:
        raise PinError(f"{source}: threads {pin.threads}: a pinned run needs at least one intra-op thread")
    machine = platform.machine().lower()
    if machine not in X86_64:
        raise PinError(f"{source}: this machine is {machine}, and the pinned kernels ({pin.capability}) are "
                       "x86-64's; turn the pin off to run unpinned (results then depend on the machine)")
    os.environ.update(pin.environment())
    if "torch" in sys.modules:
        check_kernels(pin, source)


def apply_pin(pin: CpuPin, source: str = "the pin") -> str:
    """Pin a process whose environment ``pin_environment`` set: the thread count, then the check that ATen runs
    the asked kernels. Returns a line describing the pin."""
    pin_environment(pin, source)
    import torch

    torch.set_num_threads(pin.threads)
    if torch.get_num_threads() != pin.threads:
        raise PinError(f"{source}: torch runs {torch.get_num_threads()} intra-op threads, the pin asks {pin.threads}")
    pin_blas(pin, source)
    return f"CPU pinned by {source}: {pin.describe()}"


def pin_blas(pin: CpuPin, source: str) -> None:
    """The OpenBLAS of numpy and scipy on the pin's threads, and a ``PinError`` when one was loaded (imported
    before ``pin_environment``) with other kernels than the pin's."""
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(pin.threads, user_api="blas")
    if pin.capability == "default":
        return  # OpenBLAS names its oldest kernel set after an older core than the one asked; nothing to compare
    wanted = LIBRARY_BRANCH[pin.capability]["OPENBLAS_CORETYPE"]
    for lib in threadpool_info():
        if lib.get("internal_api") == "openblas" and lib.get("architecture", wanted).lower() != wanted.lower():
            raise PinError(f"{source}: {lib.get('filepath', 'OpenBLAS')} had chosen its {lib['architecture']} "
                           f"kernels before the pin to {wanted}; start a fresh process, or set "
                           f"OPENBLAS_CORETYPE={wanted} before importing numpy")


# The CPU flags each kernel set needs (as /proc/cpuinfo names them; ATen's own test is the same).
REQUIRED_FLAGS = {"default": set(), "avx2": {"avx2", "fma"}, "avx512": {"avx512f", "avx512bw", "avx512vl", "avx512dq"}}


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux), or None where /proc/cpuinfo cannot be read."""
    try:
        with open("/proc/cpuinfo") as handle:
            line = next((x for x in handle if x.startswith("flags")), "")
    except OSError:
        return None
    return set(line.partition(":")[2].split())


def check_kernels(pin: CpuPin, source: str) -> None:
    """ATen runs the asked kernels, or one ``PinError`` line says why not."""
    import torch

    running = torch.backends.cpu.get_cpu_capability().lower()
    if running != pin.capability:
        flags = cpu_flags()
        if flags is not None and not REQUIRED_FLAGS[pin.capability] <= flags:
            raise PinError(f"{source}: this CPU cannot run ATen's {pin.capability} kernels (it lacks "
                           f"{' '.join(sorted(REQUIRED_FLAGS[pin.capability] - flags))}); pin a kernel set it has "
                           "(\"avx2\", or \"default\" on any x86-64)")
        raise PinError(f"{source}: torch had chosen ATen's {running} kernels before the pin to {pin.capability}; "
                       f"start a fresh process, or set ATEN_CPU_CAPABILITY={pin.capability} before importing torch")
