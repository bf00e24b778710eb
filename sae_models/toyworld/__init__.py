"""The embedded toy world: a labelled grammar, its tokenizer, and tiny LMs trained on it."""

from sae_models._lazy import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    **dict.fromkeys(["Document", "HELD_OUT_IOI_PAIRS", "ToyWorld", "WorldConfig", "concepts", "instruction_prompt",
                     "ioi_counterfactual_pairs", "ioi_pairs", "ioi_prompt_pair", "lexicon"],
                    "grammar"),
    "build_tokenizer": "tokenizer", "save_tokenizer": "tokenizer",
    "ToyModelConfig": "config",
    "ToyModelReport": "train", "evaluate_toy_lm": "train", "ioi_scores": "train",
    "train_toy_lm": "train", "init_toy_twin": "train",
})
