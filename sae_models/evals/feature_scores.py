"""Per-latent output scores: the output score S_out of [A25] and Delta Token Confidence of [W25].

Both intervene on a neutral prompt ("From my experience,") at its last position only: the latent's code goes
up by s x a_max (a_max: the largest code at that position), decoded with the reconstruction error kept
(``intervene.set_codes``). An edit at the last position changes nothing before it, so the prompt runs once
with a KV cache over all but its last token, and then many latents at a time run that last token alone
against the cache, expanded along the batch: one token per latent instead of the whole prompt.

- C_k(p) = -(1/k) sum of log p over the k most likely tokens; DeltaC_k = C_k(intervened) - C_k(base).
  UP ranks latents by DeltaC from the most positive, DOWN from the most negative.
- Logit lens: the 20 tokens of W_U LN_final(d_f) with the largest logits. Among them, r is the best rank in
  the intervened next-token distribution (0: the most likely token) and p the highest probability;
  S_out = (1 - r / |V|) x p.
- ``zero_others`` scores the variant of [W25] that also zeroes every other code at that position.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from sae_models.arrow import schema_of
from sae_models.evals.config import SelectionConfig
from sae_models.lm.hooks import capture, edit_output, hook_module
from sae_models.lm.intervene import last_position, logit_lens, set_codes, tokenize
from sae_models.lm.loading import LoadedLM
from sae_models.progress import Progress


class FeatureScoreError(ValueError):
    """A prompt or latent set the scores cannot be computed on, named."""


@dataclass
class FeatureScore:
    """One row of ``feature_scores``: one live latent's logit lens, output score and DeltaC."""

    latent: int
    lens_tokens: list[str]  # the logit lens's top tokens of the decoder direction, most likely first
    lens_rank: int  # r: the best rank of a lens token in the intervened distribution (0 = most likely)
    lens_prob: float  # p: the highest intervened probability of a lens token
    output_score: float  # S_out = (1 - r / |V|) p
    delta_c1: float
    delta_c5: float
    delta_c1_zeroed: float | None  # the zero-every-other-code variant, when asked for
    delta_c5_zeroed: float | None
    up_rank: int  # 1 = the most positive DeltaC_k (k = ``rank_k``) of the SAE's scored latents
    down_rank: int  # 1 = the most negative


FEATURE_SCORES_SCHEMA = schema_of(FeatureScore)
CONFIDENCE_K = (1, 5)  # DeltaC_1 (the paper's default) and DeltaC_5


@dataclass
class PromptState:
    """The neutral prompt, run once: the cache of all but its last token, its last token and position, and the
    unedited next-token distribution."""

    prefix_cache: object
    last_token: torch.Tensor  # [1, 1]
    position: int
    base_logits: torch.Tensor  # [vocab]


def token_confidences(logits: torch.Tensor, ks: Sequence[int], lse: torch.Tensor | None = None
                      ) -> dict[int, torch.Tensor]:
    """C_k per row for each k, from next-token logits (or log probabilities): minus the mean log probability
    of the k most likely tokens, log p = logit - logsumexp. One top-k serves every k; nothing of the size of
    the vocabulary is written, which is what a step costs at a 256k vocabulary."""
    lse = logits.logsumexp(-1) if lse is None else lse
    top = logits.topk(max(ks), dim=-1).values
    return {k: lse - top[:, :k].mean(-1) for k in ks}


def token_confidence(logits: torch.Tensor, k: int) -> torch.Tensor:
    return token_confidences(logits, (k,))[k]


def _last_step(lm: LoadedLM, state: PromptState, rows: int) -> torch.Tensor:
    """Next-token logits [rows, vocab] of the prompt's last token run alone against the cached prefix,
    with whatever edit is installed on the hook point."""
    cache = copy.deepcopy(state.prefix_cache)
    cache.batch_repeat_interleave(rows)
    device = state.last_token.device
    out = lm.model(input_ids=state.last_token.expand(rows, 1),
                   attention_mask=torch.ones(rows, state.position + 1, dtype=torch.long, device=device),
                   position_ids=torch.full((rows, 1), state.position, device=device),
                   past_key_values=cache, use_cache=True)
    return out.logits[:, -1].float()


def prompt_state(lm: LoadedLM, prompt: str) -> PromptState:
    """The one pass over the prompt's prefix, and the unedited last step."""
    enc = tokenize(lm, [prompt])
    ids = enc["input_ids"]
    if ids.shape[1] < 2:
        raise FeatureScoreError(f"prompt {prompt!r} is {ids.shape[1]} token(s): the scores need at least two "
                                "(a prefix to cache and a last position to edit)")
    with torch.inference_mode():
        prefix = lm.model(input_ids=ids[:, :-1], use_cache=True).past_key_values
        state = PromptState(prefix, ids[:, -1:], ids.shape[1] - 1, torch.empty(0))
        state.base_logits = _last_step(lm, state, 1)[0]
    return state


def _code_update(latents: torch.Tensor, amount: float, zero_others: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """Row i's codes: latent ``latents[i]`` up by ``amount``; with ``zero_others``, every other code zeroed."""

    def update(codes: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(latents), device=codes.device)
        out = torch.zeros_like(codes) if zero_others else codes.clone()
        out[rows, latents] = codes[rows, latents] + amount
        return out

    return update


def intervened_logits(lm: LoadedLM, sae, module: torch.nn.Module, state: PromptState, latents: Sequence[int],
                     amount: float, zero_others: bool = False) -> torch.Tensor:
    """[len(latents), vocab]: the next-token logits with each latent's code raised by ``amount`` at the
    last position (one row per latent, all in one batch)."""
    index = torch.as_tensor(list(latents), dtype=torch.long, device=state.last_token.device)
    edit = set_codes(sae, _code_update(index, amount, zero_others))
    with edit_output(module, edit), torch.inference_mode():
        return _last_step(lm, state, len(index))


def lens_tokens(lm: LoadedLM, sae, latents: Sequence[int], top: int) -> torch.Tensor:
    """[len(latents), top] token ids of the logit lens of each latent's unit decoder direction."""
    with torch.inference_mode():
        directions = sae.decoder_directions()[torch.as_tensor(list(latents), dtype=torch.long)]
        return logit_lens(lm, directions).topk(top, dim=-1).indices.cpu()


def output_scores(logits: torch.Tensor, lens: torch.Tensor, lse: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(r, p, S_out) per row, from intervened logits (or log probabilities) [n, vocab] and lens token ids
    [n, top]."""
    lse = logits.logsumexp(-1) if lse is None else lse
    best_logit = logits.gather(1, lens.to(logits.device)).max(1).values
    # the best-ranked lens token is the most likely one; its rank: how many tokens are strictly more likely
    best_rank = (logits > best_logit[:, None]).sum(-1)
    best_prob = (best_logit - lse).exp()
    return best_rank, best_prob, (1 - best_rank.float() / logits.shape[1]) * best_prob


def _ranks(values: Sequence[float], descending: bool) -> list[int]:
    """1-based ranks, ties broken by latent order."""
    order = sorted(range(len(values)), key=lambda i: -values[i] if descending else values[i])
    ranks = [0] * len(values)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def prompt_a_max(lm: LoadedLM, sae, module, prompt: str, log: Callable[[str], None] = lambda _: None,
                 fallback: float | None = None) -> float:
    """a_max of [W25]: the largest code at the prompt's last token. A thresholded SAE (BatchTopK, JumpReLU,
    Gated) can leave that position with no latent firing; then the largest code at any of the prompt's
    positions, with a line in the log. A dictionary with few sparse latents (an oracle) can leave the whole prompt
    silent: then ``fallback`` (the largest code it reaches on the activation corpus), logged; without one, an
    error naming the prompt."""
    enc = tokenize(lm, [prompt])
    with torch.inference_mode():
        with capture(module) as seen:
            lm.model(**enc)
        codes = sae.encode(seen[0][0].float().to(sae.W_dec.device))
        last, anywhere = float(codes[-1].max()), float(codes.max())
    if last > 0:
        return last
    if anywhere > 0:
        log(f"no latent fires at the last token of {prompt!r}: a_max = {anywhere:.4g}, the largest code at any of "
            "its tokens")
        return anywhere
    if fallback is not None and fallback > 0:
        log(f"no latent fires at any token of {prompt!r}: a_max = {fallback:.4g}, the largest code on the activation "
            "corpus")
        return fallback
    raise FeatureScoreError(f"every code is <= 0 at every token of {prompt!r}: a_max = {anywhere}, so no latent "
                            "can be raised by s x a_max; choose another [selection] prompt")


@dataclass(frozen=True)
class FeatureScoreSummary:
    """The prompt's side of one SAE's scoring: a_max, the unedited next token, and the time it took."""

    a_max: float
    base_token: str
    seconds: float


@dataclass(frozen=True)
class FeatureScoreResult:
    """One SAE's feature scores: a row per latent (table ``feature_scores``) and the summary."""

    rows: list[FeatureScore]
    summary: FeatureScoreSummary


def run_feature_scores(lm: LoadedLM, sae, layer: int, hook: str, latents: Sequence[int], cfg: SelectionConfig,
                       log: Callable[[str], None] = lambda _: None, corpus_max: float | None = None
                       ) -> FeatureScoreResult:
    """Every latent of ``latents``: logit lens, S_out and DeltaC_k, ``cfg.batch_size`` latents per forward.
    ``corpus_max``: the largest code on the activation corpus, a_max when the prompt leaves every latent silent."""
    d_sae = sae.W_dec.shape[0]
    bad = [f for f in latents if not 0 <= f < d_sae]
    if bad:
        raise FeatureScoreError(f"latents {bad[:5]} are out of range: the SAE has {d_sae} latents")
    if not latents:
        raise FeatureScoreError("no latent to score (the SAE has no live latent)")
    start, report = time.perf_counter(), Progress(log)
    module = hook_module(lm.model, layer, hook)
    state = prompt_state(lm, cfg.prompt)
    a_max = prompt_a_max(lm, sae, module, cfg.prompt, log, corpus_max)
    amount = cfg.scale * a_max
    base = {k: float(c[0]) for k, c in token_confidences(state.base_logits[None], CONFIDENCE_K).items()}
    columns: dict[str, list] = {name: [] for name in ("lens", "r", "p", "s_out", "c1", "c5", "z1", "z5")}
    for lo in range(0, len(latents), cfg.batch_size):
        batch = list(latents[lo:lo + cfg.batch_size])
        logits = intervened_logits(lm, sae, module, state, batch, amount)
        lse = logits.logsumexp(-1)
        lens = lens_tokens(lm, sae, batch, cfg.lens_top)
        r, p, s_out = output_scores(logits, lens, lse)
        columns["lens"] += lens.tolist()
        columns["r"] += r.tolist()
        columns["p"] += p.tolist()
        columns["s_out"] += s_out.tolist()
        for (k, c), name in zip(token_confidences(logits, CONFIDENCE_K, lse).items(), ("c1", "c5"), strict=True):
            columns[name] += (c - base[k]).tolist()
        if cfg.zero_others:
            zeroed = intervened_logits(lm, sae, module, state, batch, amount, zero_others=True)
            for (k, c), name in zip(token_confidences(zeroed, CONFIDENCE_K).items(), ("z1", "z5"), strict=True):
                columns[name] += (c - base[k]).tolist()
        report(f"feature scores: {lo + len(batch)}/{len(latents)} latents")
    ranked = columns[f"c{cfg.rank_k}"]
    up, down = _ranks(ranked, descending=True), _ranks(ranked, descending=False)
    decode = lm.tokenizer.convert_ids_to_tokens
    rows = [FeatureScore(int(f), decode(columns["lens"][i]), int(columns["r"][i]), columns["p"][i],
                         columns["s_out"][i], columns["c1"][i], columns["c5"][i],
                         columns["z1"][i] if cfg.zero_others else None,
                         columns["z5"][i] if cfg.zero_others else None, up[i], down[i])
            for i, f in enumerate(latents)]
    base_token = decode([int(state.base_logits.argmax())])[0]
    return FeatureScoreResult(rows, FeatureScoreSummary(a_max, base_token, time.perf_counter() - start))


def naive_delta_c(lm: LoadedLM, sae, layer: int, hook: str, latent: int, cfg: SelectionConfig) -> float:
    """DeltaC_k (k = ``rank_k``) of one latent the slow way: the whole prompt, twice, unbatched and uncached.
    The reference the fast path is tested and benchmarked against (C_k from probabilities, not logits)."""
    module = hook_module(lm.model, layer, hook)
    enc = tokenize(lm, [cfg.prompt])
    amount = cfg.scale * prompt_a_max(lm, sae, module, cfg.prompt)
    with torch.inference_mode():
        base = lm.model(**enc).logits[:, -1].float().softmax(-1)

        def raise_latent(codes: torch.Tensor) -> torch.Tensor:
            out = codes.clone()
            out[:, latent] += amount
            return out

        edit = set_codes(sae, raise_latent, last_position(enc["attention_mask"]))
        with edit_output(module, edit):
            probs = lm.model(**enc).logits[:, -1].float().softmax(-1)

    def confidence(p: torch.Tensor) -> float:  # from probabilities, independently of the fast path's logits
        return float(-p[0].topk(cfg.rank_k).values.log().mean())

    return confidence(probs) - confidence(base)
