"""The instructions that steering prompts are made of (AxBench: 10 per concept, 5 dev / 5 test).

- ``toyworld``: the toy world's topic questions (``question : tell me about <topic> . answer :``), the shape
  its models learned; the judge rates instruction relevance by the topic.
- ``bundled``: 64 general instructions in the Alpaca-Eval style, written for this project, for real models
  (formatted with the model's chat template when it has one).
- a path: a user's JSONL file (one ``{"instruction": "..."}`` object per line, an optional ``"id"``) or a
  Parquet file with an ``instruction`` column (and optionally ``id``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUNDLED = (
    "Explain how a refrigerator keeps food cold.",
    "Write a short poem about the first day of spring.",
    "Give three tips for staying focused while studying.",
    "Describe the water cycle to a ten-year-old.",
    "What are the main differences between a virus and a bacterium?",
    "Suggest a name for a small bakery and explain your choice.",
    "Summarize the plot of a story about a lost dog finding its way home.",
    "How do I change a flat tire on a bicycle?",
    "Write a polite email asking a colleague to review a document.",
    "List five healthy snacks that are easy to prepare.",
    "Why is the sky blue during the day and red at sunset?",
    "Describe your ideal weekend in a few sentences.",
    "Explain what a budget is and why it is useful.",
    "Write a short story that begins with a knock on the door.",
    "What should someone pack for a three-day hiking trip?",
    "Give advice to a person starting their first job.",
    "Explain how vaccines help the body fight disease.",
    "Describe a busy market in the morning.",
    "What are some good ways to save energy at home?",
    "Write a thank-you note to a teacher.",
    "Explain the rules of a simple card game.",
    "How does a plant turn sunlight into food?",
    "Suggest a plan for learning a new language in six months.",
    "Describe the sound of rain on a tin roof.",
    "What makes a good friend?",
    "Explain how to boil an egg perfectly.",
    "Write a product description for a reusable water bottle.",
    "Give three reasons to visit a public library.",
    "Describe how a train journey feels at night.",
    "What is the difference between weather and climate?",
    "Write a motivational message for a team before a big game.",
    "Explain how a computer stores information.",
    "Plan a simple birthday party for a child.",
    "Describe the life of a lighthouse keeper.",
    "How can someone improve their sleep?",
    "Write a limerick about a forgetful cat.",
    "Explain why exercise is good for mental health.",
    "Describe a painting you would like to see in a museum.",
    "What are the steps to plant a tree?",
    "Give a short history of the bicycle.",
    "Write a dialogue between a customer and a shop assistant.",
    "Explain how interest on a savings account works.",
    "Describe the view from the top of a mountain.",
    "What are good habits for keeping a clean kitchen?",
    "Write a brief review of an imaginary restaurant.",
    "Explain how bees make honey.",
    "Suggest three hobbies for someone who likes being outdoors.",
    "Describe a thunderstorm from the point of view of a bird.",
    "How should a beginner start running?",
    "Write an opening paragraph for a mystery novel.",
    "Explain what the internet is to someone who has never used it.",
    "Describe a typical school day.",
    "What are the benefits of learning to cook?",
    "Write instructions for folding a paper airplane.",
    "Explain why the moon has phases.",
    "Describe the smell of a forest after rain.",
    "Give tips for a successful job interview.",
    "Write a short speech for a friend's wedding.",
    "Explain how a bill becomes a law, in simple terms.",
    "Describe a journey across the ocean on a sailing ship.",
    "What should someone consider when adopting a pet?",
    "Write a haiku about the night sky.",
    "Explain the difference between saving and investing.",
    "Describe how music can change a person's mood.",
)


class InstructionError(ValueError):
    """An instruction source that cannot be used; the message names it."""


@dataclass(frozen=True)
class Instruction:
    """One instruction: a stable id, the text a judge sees, and the prompt the model continues."""

    id: str
    text: str
    prompt: str


def toyworld_instructions() -> list[Instruction]:
    from sae_models.toyworld.grammar import TOPICS, instruction_prompt

    return [Instruction(f"topic-{t}", f"tell me about {t}", instruction_prompt(t)) for t in TOPICS]


def _read_file(path: Path) -> list[tuple[str | None, str]]:
    """(id or None, text) per instruction of a JSONL or Parquet file."""
    if not path.is_file():
        raise InstructionError(f"instructions file {path}: no such file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "instruction" not in table.column_names:
            raise InstructionError(f"instructions file {path}: no 'instruction' column ({table.column_names})")
        ids = table.column("id").to_pylist() if "id" in table.column_names else [None] * table.num_rows
        return list(zip(ids, table.column("instruction").to_pylist(), strict=True))
    if path.suffix != ".jsonl":
        raise InstructionError(f"instructions file {path}: expected a .jsonl or .parquet file")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            out.append((obj.get("id"), obj["instruction"]))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise InstructionError(f"instructions file {path}, line {n}: expected a JSON object with an "
                                   "'instruction' field") from None
    return out


def _checked(entries: list[tuple[str | None, str]], source: str) -> list[tuple[str, str]]:
    out = []
    for i, (key, text) in enumerate(entries):
        if not isinstance(text, str) or not text.strip():
            raise InstructionError(f"instructions {source}: entry {i + 1} has an empty or non-text instruction")
        out.append((str(key) if key is not None else f"i{i:04d}", text.strip()))
    ids = [k for k, _ in out]
    if len(set(ids)) != len(ids):
        raise InstructionError(f"instructions {source}: ids are not unique")
    return out


def chat_prompt(tokenizer, text: str, use_template: bool = True) -> str:
    """``text`` as one user turn of the model's chat template (when it has one and ``use_template``), ready for
    a tokenizer that adds its own BOS."""
    if not (use_template and getattr(tokenizer, "chat_template", None)):
        return text
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True)
    bos = getattr(tokenizer, "bos_token", None)
    return prompt[len(bos):] if bos and prompt.startswith(bos) else prompt


def load_instructions(source: str, tokenizer=None, use_template: bool = True, toy: bool = False
                      ) -> list[Instruction]:
    """The instruction set named by ``[steering] instructions`` ("auto" picks by ``toy``)."""
    if source == "toyworld" or (source == "auto" and toy):
        return toyworld_instructions()
    if source in ("auto", "bundled"):
        entries = _checked([(f"b{i:02d}", t) for i, t in enumerate(BUNDLED)], "bundled")
    else:
        entries = _checked(_read_file(Path(source).expanduser()), source)
    if not entries:
        raise InstructionError(f"instructions {source}: no instruction found")
    return [Instruction(k, t, chat_prompt(tokenizer, t, use_template) if tokenizer is not None else t)
            for k, t in entries]


def instructions_for(latent: int, pool: list[Instruction], n: int, seed: int) -> list[Instruction]:
    """The ``n`` instructions of one concept: a seeded draw without replacement, the same at any pool order."""
    if n > len(pool):
        raise InstructionError(f"{n} instructions per concept requested but the set holds {len(pool)}")
    ordered = sorted(pool, key=lambda ins: ins.id)
    picks = np.random.default_rng([seed, latent]).choice(len(ordered), size=n, replace=False)
    return [ordered[i] for i in picks]
