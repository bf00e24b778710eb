"""Train a tiny Gemma-2 or Qwen-2 causal LM on toy-world text and save an ordinary Hugging Face directory.

The saved directory (config.json, model.safetensors, tokenizer.json) loads through ``AutoModelForCausalLM``
exactly as ``google/gemma-2-2b`` would, so every later stage runs the real code path on it.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import Gemma2Config, PretrainedConfig, Qwen2Config

from sae_models.lm.loading import load_tokenizer
from sae_models.toyworld.config import ToyModelConfig
from sae_models.toyworld.grammar import IOI_ORDERS, NAMES, ioi_counterfactual_pairs, word_topics
from sae_models.toyworld.tokenizer import save_tokenizer

REPORT_FILE = "toyworld_report.json"


@dataclass(frozen=True)
class ToyModelReport:
    """How well the toy LM learned the world (all losses in nats per token).

    ``ioi_accuracy`` is measured on name pairs that no generated document contains (generalisation), over both
    orders, and per order beside it (``ioi_accuracy_abba``: the indirect object named first; ``_baba``: second);
    ``ioi_accuracy_train_pairs`` on the pairs the corpus does contain (which recall alone could solve);
    ``ioi_logit_diff`` is the IOI logit difference of [W22] on the held-out pairs (0: no preference).
    """

    held_out_loss: float
    unigram_cross_entropy: float
    topic_word_accuracy: float
    topic_consistency: float
    ioi_accuracy: float
    ioi_accuracy_abba: float
    ioi_accuracy_baba: float
    ioi_accuracy_train_pairs: float
    chance_ioi_accuracy: float
    ioi_logit_diff: float  # mean logit(indirect object) - logit(subject) at the answer, held-out pairs
    parameters: int
    steps: int
    train_seconds: float


def hf_config(cfg: ToyModelConfig, tokenizer) -> PretrainedConfig:
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden,
        intermediate_size=cfg.intermediate,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.context,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        initializer_range=cfg.initializer_range,
    )
    if cfg.family == "gemma2":
        return Gemma2Config(head_dim=cfg.hidden // cfg.heads, sliding_window=cfg.context,
                            query_pre_attn_scalar=cfg.hidden // cfg.heads, **common)
    return Qwen2Config(**common)


def _encode(tokenizer, texts: Sequence[str], context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [N, context] (EOS appended, right-padded) and next-token labels with -100 at padding."""
    ids = tokenizer([t + " <eos>" for t in texts], truncation=True, max_length=context,
                    padding="max_length", return_tensors="pt")
    labels = ids["input_ids"].clone()
    labels[ids["attention_mask"] == 0] = -100
    return ids["input_ids"], labels


def _lr_factor(step: int, cfg: ToyModelConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def train_toy_lm(
    train_texts: Sequence[str],
    eval_texts: Sequence[str],
    cfg: ToyModelConfig,
    out_dir: Path,
    log: Callable[[str], None] = print,
    on_step: Callable[[int, torch.nn.Module, object], None] | None = None,
) -> ToyModelReport:
    """Fit a tiny causal LM on ``train_texts``, evaluate on ``eval_texts``, save it to ``out_dir``.
    ``on_step(step, model, tokenizer)``, when given, is called after every step (e.g. to follow IOI as it is
    learned: ``bench/ioi_seeds.py``); it must leave the model as it found it."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if not train_texts or not eval_texts:
        raise ValueError("toy LM training: the corpus has no training or no evaluation documents")
    torch.manual_seed(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_tokenizer(out_dir)
    tokenizer = load_tokenizer(str(out_dir))
    model = AutoModelForCausalLM.from_config(hf_config(cfg, tokenizer), attn_implementation="eager")
    inputs, labels = _encode(tokenizer, train_texts, cfg.context)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    start = time.perf_counter()
    for step in range(cfg.steps):
        idx = torch.randint(len(inputs), (cfg.batch,), generator=gen)
        width = int((labels[idx] != -100).sum(1).max())  # trim the batch to its longest document
        loss = model(input_ids=inputs[idx, :width], labels=labels[idx, :width]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 200 == 0 or step == cfg.steps - 1:
            log(f"{cfg.family} step {step + 1}/{cfg.steps} loss {loss.item():.3f}")
        if on_step is not None:
            on_step(step + 1, model, tokenizer)
    seconds = time.perf_counter() - start
    model.eval()
    model.save_pretrained(out_dir)
    report = evaluate_toy_lm(model, tokenizer, train_texts, eval_texts, cfg, seconds)
    (out_dir / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2))
    return report


def init_toy_twin(
    train_texts: Sequence[str],
    eval_texts: Sequence[str],
    cfg: ToyModelConfig,
    seed: int,
    out_dir: Path,
) -> ToyModelReport:
    """The toy LM's random-weights control: its config and tokenizer, weights drawn by the family's own
    initialiser under ``seed`` and never trained, saved to ``out_dir`` and evaluated as the trained one is."""
    from sae_models.lm.control import save_random_init

    if not train_texts or not eval_texts:
        raise ValueError("toy LM control: the corpus has no training or no evaluation documents")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_tokenizer(out_dir)
    tokenizer = load_tokenizer(str(out_dir))
    model = save_random_init(hf_config(cfg, tokenizer), seed, out_dir)
    report = replace(evaluate_toy_lm(model, tokenizer, train_texts, eval_texts, cfg), steps=0)
    (out_dir / REPORT_FILE).write_text(json.dumps(asdict(report), indent=2))
    return report


def _unigram_cross_entropy(train_ids: torch.Tensor, eval_targets: torch.Tensor, vocab: int) -> float:
    counts = Counter(train_ids[train_ids >= 0].tolist())
    total = sum(counts.values())
    probs = np.array([(counts.get(i, 0) + 1) / (total + vocab) for i in range(vocab)])
    return float(-np.log(probs[eval_targets.numpy()]).mean())


@torch.inference_mode()
def evaluate_toy_lm(model, tokenizer, train_texts, eval_texts, cfg: ToyModelConfig,
                    train_seconds: float = 0.0) -> ToyModelReport:
    """Held-out loss against the unigram baseline, topic-word accuracy, and IOI accuracy on held-out and
    on training name pairs."""
    inputs, labels = _encode(tokenizer, eval_texts, cfg.context)
    logits = torch.cat([model(input_ids=inputs[i:i + 64]).logits.float()
                        for i in range(0, len(inputs), 64)])
    pred, target = logits[:, :-1], labels[:, 1:]
    valid = target != -100
    loss = torch.nn.functional.cross_entropy(pred[valid], target[valid]).item()
    _, train_labels = _encode(tokenizer, train_texts, cfg.context)
    unigram = _unigram_cross_entropy(train_labels[:, 1:], target[valid], len(tokenizer))

    topic_of_id = {tokenizer.convert_tokens_to_ids(w): t for w, t in word_topics().items()}
    argmax = pred.argmax(-1)[valid].tolist()
    gold = target[valid].tolist()
    topical = [(p, g) for p, g in zip(argmax, gold, strict=True) if g in topic_of_id]
    exact = sum(p == g for p, g in topical) / max(1, len(topical))
    consistent = sum(topic_of_id.get(p) == topic_of_id[g] for p, g in topical) / max(1, len(topical))
    accuracy, logit_diff = ioi_scores(model, tokenizer)
    abba, baba = (ioi_scores(model, tokenizer, orders=(order,))[0] for order in IOI_ORDERS)
    return ToyModelReport(
        held_out_loss=loss,
        unigram_cross_entropy=unigram,
        topic_word_accuracy=exact,
        topic_consistency=consistent,
        ioi_accuracy=accuracy,
        ioi_accuracy_abba=abba,
        ioi_accuracy_baba=baba,
        ioi_accuracy_train_pairs=ioi_scores(model, tokenizer, held_out=False)[0],
        chance_ioi_accuracy=1 / len(NAMES),
        ioi_logit_diff=logit_diff,
        parameters=sum(p.numel() for p in model.parameters()),
        steps=cfg.steps,
        train_seconds=train_seconds,
    )


@torch.inference_mode()
def ioi_scores(model, tokenizer, held_out: bool = True, batch: int = 256, orders: tuple[str, ...] = IOI_ORDERS
               ) -> tuple[float, float]:
    """(accuracy, mean logit difference) over every IOI prompt of ``orders`` on the held-out name pairs
    (``HELD_OUT_IOI_PAIRS``, never in the corpus) or, with ``held_out=False``, on the training pairs. Accuracy:
    the argmax next token is the indirect object; logit difference: logit(indirect object) - logit(subject)."""
    prompts = ioi_counterfactual_pairs(held_out, orders)
    correct, diffs = 0, []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        enc = tokenizer([clean for clean, *_ in chunk], return_tensors="pt", padding=True, padding_side="right")
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        last = logits[torch.arange(len(chunk)), enc["attention_mask"].sum(1) - 1]
        answer, subject = (torch.tensor(tokenizer.convert_tokens_to_ids([row[i] for row in chunk])) for i in (2, 3))
        rows = torch.arange(len(chunk))
        correct += int((last.argmax(-1) == answer).sum())
        diffs += (last[rows, answer] - last[rows, subject]).tolist()
    return correct / len(prompts), float(np.mean(diffs))
