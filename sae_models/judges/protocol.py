"""What every judge backend speaks: a request (chat messages plus the same content, structured) in, a
completion (text and token counts) out.

Chat backends (an OpenAI-compatible endpoint, a local transformers model) read ``messages``; the toy-world
judge reads ``payload``, which holds exactly what the messages show and nothing more (no activations in a
detection or simulation request), so it cannot peek at the answer.
"""

from dataclasses import dataclass, field
from typing import Literal, Protocol

Task = Literal["explain", "detect", "simulate", "rate"]


class JudgeError(RuntimeError):
    """The judge could not answer (endpoint down, authentication refused, model failed); names the backend."""


@dataclass(frozen=True)
class Window:
    """A text window shown to a judge: its tokens and, when the judge may see them, their activations."""

    tokens: tuple[str, ...]
    acts: tuple[float, ...] = ()


@dataclass(frozen=True)
class JudgeRequest:
    task: Task
    messages: tuple[dict, ...]
    payload: dict = field(default_factory=dict, compare=False)
    max_tokens: int = 64


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Backend(Protocol):
    """A model that answers judge requests. ``name`` and ``model`` key the judge cache."""

    name: str
    model: str
    max_concurrency: int

    def complete(self, request: JudgeRequest) -> Completion: ...
