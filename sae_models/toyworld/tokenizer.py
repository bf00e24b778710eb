"""Word-level tokenizer for the toy world, saved as an ordinary ``tokenizer.json``.

It loads through ``AutoTokenizer`` like any hub tokenizer and prepends ``<bos>`` the way Gemma's does,
so the extraction code masks it exactly as it would for a real model.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors

from sae_models.toyworld.grammar import SPECIAL_TOKENS, lexicon

TOKENIZER_CONFIG = {
    "tokenizer_class": "TokenizersBackend",
    "bos_token": "<bos>",
    "eos_token": "<eos>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "padding_side": "right",
    "model_max_length": 1024,
}


# The toy models are not chat models; this template only lets them stand behind a chat endpoint
# (`transformers serve`) or the local judge backend, where their answers exercise the protocol, not judgment.
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }} {% endfor %}"


def build_tokenizer() -> Tokenizer:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + lexicon())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return tok


def save_tokenizer(directory: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and chat_template.jinja into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2))
    (directory / "chat_template.jinja").write_text(CHAT_TEMPLATE)
