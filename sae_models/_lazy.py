"""Lazy package exports (PEP 562): ``from sae_models.sae import build_sae`` imports torch, but reading a
package's light ``config`` module (as lake.toml validation does) does not."""

from collections.abc import Callable
from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], list[str]]:
    """``exports`` maps a public name to the submodule (relative to ``package``) that defines it."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{exports[name]}"), name)

    return __getattr__, sorted(exports)
