"""The embedded toy world: a labelled grammar, its tokenizer, and tiny LMs trained on it."""

from sae_models.toyworld.grammar import (
    Document,
    ToyWorld,
    WorldConfig,
    concepts,
    instruction_prompt,
    ioi_prompt_pair,
    lexicon,
)
from sae_models.toyworld.tokenizer import build_tokenizer, save_tokenizer
from sae_models.toyworld.train import ToyModelConfig, ToyModelReport, evaluate_toy_lm, train_toy_lm

__all__ = [
    "Document",
    "ToyModelConfig",
    "ToyModelReport",
    "ToyWorld",
    "WorldConfig",
    "build_tokenizer",
    "concepts",
    "evaluate_toy_lm",
    "instruction_prompt",
    "ioi_prompt_pair",
    "lexicon",
    "save_tokenizer",
    "train_toy_lm",
]
