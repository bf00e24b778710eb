"""One judge protocol (explain, detect, simulate, rate) over pluggable backends, with a call cache."""

from sae_models.judges.cache import JudgeCache
from sae_models.judges.judge import Judge, JudgeStats, Prices
from sae_models.judges.protocol import Backend, Completion, JudgeError, JudgeRequest, Window

__all__ = ["Backend", "Completion", "Judge", "JudgeCache", "JudgeError", "JudgeRequest", "JudgeStats", "Prices",
           "Window"]
