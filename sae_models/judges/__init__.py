"""One judge protocol (explain, detect, simulate, rate) over pluggable backends, with a call cache."""

from sae_models._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "JudgeCache": "cache", "JudgeConfig": "config",
    "Judge": "judge", "JudgeStats": "judge", "Prices": "judge", "build_judge": "judge", "usage_field": "judge",
    "USAGE_COLUMNS": "judge",
    "Backend": "protocol", "Completion": "protocol", "JudgeError": "protocol", "JudgeRequest": "protocol",
    "Window": "protocol",
})
