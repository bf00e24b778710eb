"""lake.toml's CPU pin for this process: importing this module (and what it runs) loads neither numpy nor torch,
so the code location can set the kernel variables before any library that reads them is loaded."""

from __future__ import annotations

from assets.lakehouse.config import ConfigError, Settings

PIN_SOURCE = "lake.toml [reproducibility]"


def pin_process(settings: Settings, apply: bool = False) -> str | None:
    """Put this process (and the processes it starts) under ``settings.cpu_pin``, if any: the kernel variables
    only (before torch is imported: the code location's load), or with ``apply`` the threads too and the check
    that ATen runs the asked kernels. A pin the machine cannot honour is one ``ConfigError`` line."""
    from sae_models.reproducible import PinError, apply_pin, pin_environment

    pin = settings.cpu_pin
    if pin is None:
        return None
    try:
        if apply:
            return apply_pin(pin, PIN_SOURCE)
        pin_environment(pin, PIN_SOURCE)
    except PinError as exc:
        raise ConfigError(str(exc)) from None
    return None
