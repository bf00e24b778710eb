"""Causal localisation by feature patching ([C23]), for any dictionary of the library.

For each prompt pair (a clean IOI prompt and its counterfactual, the names swapped) the residual stream at the
hook point is encoded with the dictionary in both runs. Patching a latent set S puts the counterfactual codes
of S into the clean run at every position, with the clean run's reconstruction error kept; since every
dictionary here decodes linearly, that is

    h_patched = h_clean + sum_{i in S} (z_cf_i - z_clean_i) d_i.

The effect is KL(p_cf || p_patched) of the final-position next-token distributions, averaged over the pairs.
One latent set serves every pair (the features behind the task, not behind one prompt). Starting from every
latent whose code differs between the runs, the latent whose removal keeps the mean KL lowest is dropped, step
by step. "Drop while KL stays under t" follows this one path for every threshold t and stops at its first
step above t, so one greedy path gives the whole threshold sweep. The path is chosen on a few fit pairs; each
threshold's set is then measured on other prompt pairs (KL, edit magnitude mean ||h_patched - h_clean|| over
positions, the IOI logit difference, the flip rate): other places, objects or name orders, never a fit
prompt or its mirror, though the names may recur.

Each greedy step scores every candidate removal at once: (candidate set x prompt pair) rows in one batch that
runs only the blocks above the hook's layer, from residual states built by one matrix product
(``intervene.resume_from``; other hook sites rerun the prefix with an added edit). ``naive_patched_kl`` is the
one-run-at-a-time reference the fast path is tested and benchmarked against.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sae_models.arrow import schema_of
from sae_models.evals.config import PatchingConfig
from sae_models.lm.hooks import capture, edit_output, hook_module
from sae_models.lm.intervene import resume_from, set_codes, tokenize
from sae_models.lm.loading import LoadedLM
from sae_models.sae.sweep import SAEIdentity


class PatchingError(ValueError):
    """Prompt pairs, a latent set or a threshold that patching cannot use, named."""


@dataclass(frozen=True)
class PromptPair:
    """A clean prompt, its counterfactual, and the answer each should get (single tokens)."""

    clean: str
    counterfactual: str
    answer: str  # the clean prompt's answer (IOI: the indirect object)
    counter_answer: str  # the counterfactual's answer (IOI: the clean prompt's subject)


@dataclass
class PairBatch:
    """The prompt pairs run once: left-padded inputs, the hook-point states of both runs [P, T, d], the answer
    ids, and the final-position log-probabilities of both runs [P, vocab]."""

    enc: dict[str, torch.Tensor]
    clean_hidden: torch.Tensor
    counter_hidden: torch.Tensor
    answer: torch.Tensor
    counter_answer: torch.Tensor
    clean_logprobs: torch.Tensor
    counter_logprobs: torch.Tensor

    @property
    def positions(self) -> torch.Tensor:
        """[P, T, 1] float mask of real (non-padding) positions."""
        return self.enc["attention_mask"][..., None].float()


@dataclass
class PatchEffect:
    """What patching one latent set does, per prompt pair."""

    kl: np.ndarray  # KL(p_cf || p_patched), nats
    logit_diff: np.ndarray  # logit(answer) - logit(counter answer) after patching
    flipped: np.ndarray  # the patched run's top token is the counterfactual answer
    edit: np.ndarray  # mean over positions of ||h_patched - h_clean||


@dataclass
class PatchingRow:
    """One row of ``patching``: the latent set that greedy dropping reaches at one KL threshold (chosen on the
    fit pairs), its effect on the held-out pairs (mean and 10th / 90th percentiles over pairs) and the
    trivial baselines beside it."""

    identity: SAEIdentity
    threshold: float
    reached: bool  # False: even every differing latent patched stays above the threshold (the full set shown)
    n_latents: int
    latents: list[int]
    kl_fit: float  # mean KL on the fit pairs (<= threshold when reached)
    kl: float  # mean over held-out pairs of KL(p_cf || p_patched), nats
    kl_p10: float
    kl_p90: float
    edit_magnitude: float  # mean over pairs and positions of ||h_clean - h_patched||
    edit_p10: float
    edit_p90: float
    logit_diff: float  # mean logit(IO) - logit(S) after patching
    flip_rate: float  # fraction of pairs whose patched top token is the counterfactual answer
    kl_random_set: float  # baseline: a seeded random set of as many differing latents, mean held-out KL
    n_candidates: int  # latents whose codes differ between the runs on the fit pairs: the greedy start
    kl_unpatched: float  # baseline: nothing patched, KL(p_cf || p_clean)
    kl_all_patched: float  # baseline: every latent differing on the fit pairs patched (the errors differ)
    edit_counterfactual: float  # baseline: the whole counterfactual state, mean ||h_cf - h_clean||
    logit_diff_clean: float
    logit_diff_counterfactual: float
    ioi_accuracy: float  # the clean runs' top token is the answer, over the held-out pairs
    chance_accuracy: float  # one of the prompt's two names at random: 0.5
    n_pairs: int
    n_eval_pairs: int


PATCHING_SCHEMA = schema_of(PatchingRow)
CHANCE_ACCURACY = 0.5  # a model that knows the answer is one of the prompt's two names, not which


@dataclass(frozen=True)
class PatchingSummary:
    """How one dictionary's patching went: the greedy path and its cost."""

    path_kl: list[float]  # mean fit KL after each drop, then the first KL above every threshold if it stopped
    seconds: float
    patched_runs: int  # (latent set x prompt pair) forward rows

    @property
    def runs_per_second(self) -> float:
        return self.patched_runs / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class PatchingResult:
    """One dictionary's patching: a frontier row per threshold (table ``patching``) and the run's summary."""

    rows: list[PatchingRow]
    summary: PatchingSummary


def toyworld_ioi_pairs(n_fit: int, n_eval: int, seed: int) -> tuple[list[PromptPair], list[PromptPair]]:
    """(fit, held-out) prompt pairs: a seeded draw of the toy world's IOI prompts on the name pairs that no
    training document contains. A held-out prompt is neither a fit prompt nor a fit prompt's mirror (clean and
    counterfactual swapped); it may share its two names with one (another place, object or name order)."""
    from sae_models.toyworld import ioi_counterfactual_pairs

    pool = [PromptPair(*p) for p in ioi_counterfactual_pairs(held_out=True)]
    order = np.random.default_rng(seed).permutation(len(pool))
    fit = [pool[i] for i in order[:n_fit]]
    mirrors = {p.counterfactual for p in fit}
    rest = [pool[i] for i in order[n_fit:] if pool[i].clean not in mirrors]
    if len(fit) < n_fit or len(rest) < n_eval:
        raise PatchingError(f"n_pairs {n_fit} + n_eval_pairs {n_eval}: the toy world has {len(pool)} held-out IOI "
                            f"prompt pairs, {len(rest)} left for evaluation after {n_fit} fit pairs and their "
                            "mirrors")
    return fit, rest[:n_eval]


def _single_token(lm: LoadedLM, prompt: str, word: str, what: str) -> int:
    """The id of ``word`` as the one token that follows ``prompt``, or a PatchingError naming it."""
    before = lm.tokenizer(prompt)["input_ids"]
    after = lm.tokenizer(f"{prompt} {word}")["input_ids"]
    if len(after) != len(before) + 1 or after[:len(before)] != before:
        raise PatchingError(f"{what} {word!r} is not one token after {prompt!r} for this tokenizer "
                            f"({len(after) - len(before)} tokens): patching needs single-token answers, "
                            "e.g. the toy world's names on a toy model")
    return after[-1]


def prepare_pairs(lm: LoadedLM, module: torch.nn.Module, pairs: Sequence[PromptPair]) -> PairBatch:
    """Check and run the prompt pairs once: same token count within each pair, single-token answers."""
    if not pairs:
        raise PatchingError("no prompt pair to patch")
    for pair in pairs:
        n_clean, n_counter = (len(lm.tokenizer(t)["input_ids"]) for t in (pair.clean, pair.counterfactual))
        if n_clean != n_counter:
            raise PatchingError(f"prompt pair {pair.clean!r} / {pair.counterfactual!r}: {n_clean} vs {n_counter} "
                                "tokens; patching needs both prompts the same length (names of one token each)")
    answer = [_single_token(lm, p.clean, p.answer, "answer") for p in pairs]
    counter = [_single_token(lm, p.counterfactual, p.counter_answer, "counterfactual answer") for p in pairs]
    runs = []
    for texts in ([p.clean for p in pairs], [p.counterfactual for p in pairs]):
        enc = tokenize(lm, texts, padding_side="left")
        with torch.inference_mode(), capture(module) as seen:
            logits = lm.model(**enc).logits[:, -1].float()
        runs.append((enc, seen[0].float(), logits.log_softmax(-1)))
    (enc, clean_hidden, clean_lp), (_, counter_hidden, counter_lp) = runs
    device = clean_lp.device
    return PairBatch(enc, clean_hidden, counter_hidden, torch.tensor(answer, device=device),
                     torch.tensor(counter, device=device), clean_lp, counter_lp)


def code_deltas(sae, batch: PairBatch) -> torch.Tensor:
    """[P, T, d_sae]: z_cf - z_clean at every real position (zero at padding)."""
    with torch.inference_mode():
        flat = [sae.encode(h.reshape(-1, h.shape[-1]).to(sae.W_dec.device)) for h in
                (batch.clean_hidden, batch.counter_hidden)]
    delta = (flat[1] - flat[0]).reshape(*batch.clean_hidden.shape[:2], -1).to(batch.clean_hidden.device)
    return delta * batch.positions


def kl_divergence(target: torch.Tensor, logprobs: torch.Tensor) -> torch.Tensor:
    """KL(p_target || p) per row, from log-probabilities (a -inf log-probability gives inf, never NaN)."""
    return torch.nn.functional.kl_div(logprobs, target, log_target=True, reduction="none").sum(-1)


def _position_mean(values: torch.Tensor, batch: PairBatch) -> torch.Tensor:
    """[P]: the mean of ``values`` [P, T] over each pair's real positions."""
    positions = batch.positions[..., 0]
    return (values * positions).sum(1) / positions.sum(1)


def _logit_diff(logprobs: torch.Tensor, batch: PairBatch) -> torch.Tensor:
    rows = torch.arange(len(logprobs), device=logprobs.device) % len(batch.answer)
    return logprobs[rows, batch.answer[rows]] - logprobs[rows, batch.counter_answer[rows]]


class Patcher:
    """Scores latent sets of one dictionary on one PairBatch: ``batch_size`` patched runs per forward pass,
    resumed above the layer (``resume``, for ``resid_post``) or rerunning the prefix with the edit added."""

    def __init__(self, lm: LoadedLM, layer: int, hook: str, sae, batch: PairBatch, batch_size: int,
                 resume: bool = True):
        self.lm, self.layer, self.hook, self.batch, self.batch_size = lm, layer, hook, batch, batch_size
        self.resume = resume and hook == "resid_post"
        self.module = hook_module(lm.model, layer, hook)
        self.delta = code_deltas(sae, batch)  # [P, T, F]
        self.w_dec = sae.W_dec.detach().float().to(self.delta.device)  # [F, d]
        self.runs = 0

    def candidates(self) -> list[int]:
        """Latents whose code differs between the clean and the counterfactual run somewhere."""
        return torch.nonzero(self.delta.abs().amax((0, 1)) > 0).flatten().tolist()

    def added(self, latents: Sequence[int]) -> torch.Tensor:
        """[P, T, d]: what patching ``latents`` adds to the clean states."""
        index = torch.as_tensor(list(latents), dtype=torch.long, device=self.delta.device)
        return self.delta[..., index] @ self.w_dec[index]

    def _logprobs(self, n_sets: int, added: Callable[[int, int], torch.Tensor]) -> torch.Tensor:
        """Final-position log-probabilities [n_sets * P, vocab] of the clean runs with sets lo..hi adding
        ``added(lo, hi)`` [hi - lo, P, T, d], built one chunk of ``batch_size`` runs at a time."""
        batch, n_pairs = self.batch, len(self.batch.answer)
        out = []
        step = max(1, self.batch_size // n_pairs)
        for lo in range(0, n_sets, step):
            chunk = added(lo, min(lo + step, n_sets))
            rows = len(chunk) * n_pairs
            enc = {k: v.repeat(len(chunk), 1) for k, v in batch.enc.items()}
            flat = chunk.reshape(rows, *chunk.shape[2:])
            with torch.inference_mode():
                if self.resume:
                    hidden = batch.clean_hidden.repeat(len(chunk), 1, 1) + flat
                    with resume_from(self.lm.model, self.layer, hidden):
                        logits = self.lm.model(**enc, logits_to_keep=1).logits[:, -1]
                else:
                    with edit_output(self.module, lambda h, flat=flat: h + flat.to(h.dtype)):
                        logits = self.lm.model(**enc, logits_to_keep=1).logits[:, -1]
            out.append(logits.float().log_softmax(-1))
            self.runs += rows
        return torch.cat(out)

    def kl(self, logprobs: torch.Tensor) -> torch.Tensor:
        """KL(p_cf || p) per row of [S * P, vocab] log-probabilities, as [S, P]."""
        counter = self.batch.counter_logprobs.repeat(len(logprobs) // len(self.batch.answer), 1)
        return kl_divergence(counter, logprobs).reshape(-1, len(self.batch.answer))

    def drop_scores(self, latents: Sequence[int], left_out: Sequence[int] | None = None) -> torch.Tensor:
        """The mean KL over pairs of the set ``latents`` with each of ``left_out`` (default: each of them) left
        out, one value per left-out latent."""
        full = self.added(latents)
        index = torch.as_tensor(list(latents if left_out is None else left_out), dtype=torch.long,
                                device=self.delta.device)

        def without(lo: int, hi: int) -> torch.Tensor:
            one = index[lo:hi]
            return full[None] - self.delta[..., one].permute(2, 0, 1)[..., None] * self.w_dec[one][:, None, None, :]

        return self.kl(self._logprobs(len(index), without)).mean(1)

    def effect(self, latents: Sequence[int]) -> PatchEffect:
        added = self.added(latents) if latents else torch.zeros_like(self.batch.clean_hidden)
        logprobs = self._logprobs(1, lambda lo, hi: added[None])
        edit = _position_mean(added.norm(dim=-1), self.batch)
        return PatchEffect(self.kl(logprobs)[0].cpu().numpy(), _logit_diff(logprobs, self.batch).cpu().numpy(),
                           (logprobs.argmax(-1) == self.batch.counter_answer).cpu().numpy(), edit.cpu().numpy())


def greedy_path(patcher: Patcher, thresholds: Sequence[float], refresh_every: int = 1, shortlist: int = 16,
                log: Callable[[str], None] = lambda _: None) -> tuple[list[int], list[int], list[float]]:
    """(start set, dropped latents in order, mean KL after each drop, plus the first KL above the largest
    threshold when the path stops there): from every differing latent, drop the one whose removal keeps the
    mean KL lowest, until that KL exceeds the largest threshold or nothing is left.

    ``refresh_every`` 1 scores every removal at every step (exact greedy, ~n^2 / 2 sets). Above 1 the greedy is
    lazy: every ``refresh_every`` steps all removals are scored, and in between only the ``shortlist`` latents
    with the lowest last scores are scored afresh and the best of them dropped (~n^2 / (2 refresh_every) + n x
    shortlist sets). A lazy step whose best KL would cross a threshold not crossed yet is rescored in full, so
    each threshold's stopping point is decided on exact scores; only the order of earlier drops may differ."""
    limits = sorted(thresholds)
    start = patcher.candidates()
    if not start:
        raise PatchingError("no latent's code differs between the clean and the counterfactual runs: the "
                            "dictionary has nothing to patch (dead latents?)")
    kept, dropped, path = list(start), [], []
    last: dict[int, float] = {}
    while kept:
        lazy = len(dropped) % refresh_every != 0 and len(kept) > shortlist
        trial = sorted(kept, key=last.__getitem__)[:shortlist] if lazy else list(kept)
        scores = patcher.drop_scores(kept, trial)
        high = max(path, default=float("-inf"))
        if lazy and any(high <= t < float(scores.min()) for t in limits):
            trial = list(kept)
            scores = patcher.drop_scores(kept, trial)
        last.update(zip(trial, scores.tolist(), strict=True))
        best = int(scores.argmin())
        path.append(float(scores[best]))
        if path[-1] > limits[-1]:
            break  # the first step above every threshold: where each stops
        kept.remove(trial[best])
        dropped.append(trial[best])
        if len(dropped) % 25 == 0:
            log(f"patching: {len(dropped)}/{len(start)} latents dropped, mean KL {path[-1]:.4f}")
    return start, dropped, path


def drops_at(path: Sequence[float], threshold: float) -> int:
    """How many latents greedy dropping under ``threshold`` drops: it stops at the path's first KL above it."""
    return next((j for j, kl in enumerate(path) if kl > threshold), len(path))


def _spread(values: np.ndarray) -> tuple[float, float, float]:
    return float(values.mean()), float(np.quantile(values, 0.1)), float(np.quantile(values, 0.9))


def _baselines(held: Patcher, full: PatchEffect, none: PatchEffect) -> dict:
    batch = held.batch
    counter_edit = _position_mean((batch.counter_hidden - batch.clean_hidden).norm(dim=-1), batch)
    return dict(kl_unpatched=float(none.kl.mean()), kl_all_patched=float(full.kl.mean()),
                edit_counterfactual=float(counter_edit.mean()),
                logit_diff_clean=float(_logit_diff(batch.clean_logprobs, batch).mean()),
                logit_diff_counterfactual=float(_logit_diff(batch.counter_logprobs, batch).mean()),
                ioi_accuracy=float((batch.clean_logprobs.argmax(-1) == batch.answer).float().mean()),
                chance_accuracy=CHANCE_ACCURACY)


def run_patching(lm: LoadedLM, sae, layer: int, hook: str, fit_pairs: Sequence[PromptPair],
                 eval_pairs: Sequence[PromptPair], cfg: PatchingConfig, identity: SAEIdentity,
                 log: Callable[[str], None] = lambda _: None) -> PatchingResult:
    """The greedy path of one dictionary on ``fit_pairs`` and its frontier measured on ``eval_pairs``: one row
    per threshold of ``cfg``, each naming the dictionary by ``identity``."""
    thresholds = sorted(cfg.thresholds)  # validated by PatchingConfig: finite and > 0
    begin = time.perf_counter()
    module = hook_module(lm.model, layer, hook)
    fit = Patcher(lm, layer, hook, sae, prepare_pairs(lm, module, fit_pairs), cfg.batch_size)
    held = Patcher(lm, layer, hook, sae, prepare_pairs(lm, module, eval_pairs), cfg.batch_size)
    start, dropped, path = greedy_path(fit, thresholds, cfg.refresh_every, cfg.shortlist, log)
    full_fit = fit.effect(start)
    none, full = held.effect([]), held.effect(start)
    common = dict(identity=identity, n_candidates=len(start), **_baselines(held, full, none), n_pairs=len(fit_pairs),
                  n_eval_pairs=len(eval_pairs))
    rows = []
    rng = np.random.default_rng(cfg.seed)
    for t in thresholds:
        n_dropped = drops_at(path, t)
        latents = sorted(set(start) - set(dropped[:n_dropped]))
        kl_fit = path[n_dropped - 1] if n_dropped else float(full_fit.kl.mean())
        effect = held.effect(latents)
        random_set = rng.choice(start, len(latents), replace=False).tolist()
        rows.append(PatchingRow(**common, threshold=t, reached=kl_fit <= t, n_latents=len(latents),
                                latents=latents, kl_fit=kl_fit, **dict(zip(("kl", "kl_p10", "kl_p90"),
                                                                           _spread(effect.kl), strict=True)),
                                **dict(zip(("edit_magnitude", "edit_p10", "edit_p90"), _spread(effect.edit),
                                           strict=True)),
                                logit_diff=float(effect.logit_diff.mean()), flip_rate=float(effect.flipped.mean()),
                                kl_random_set=float(held.effect(random_set).kl.mean())))
    return PatchingResult(rows, PatchingSummary(path, time.perf_counter() - begin, fit.runs + held.runs))


def naive_patched_kl(lm: LoadedLM, sae, layer: int, hook: str, pair: PromptPair, latents: Sequence[int]) -> float:
    """KL(p_cf || p_patched) of one pair and one latent set the slow way: full forward passes, one prompt at a
    time, the codes replaced inside the hook (``set_codes``). The reference of the batched path."""
    if not latents:
        raise PatchingError("empty latent set: name at least one latent to patch")
    module = hook_module(lm.model, layer, hook)
    index = torch.as_tensor(list(latents), dtype=torch.long)
    with torch.inference_mode():
        counter = tokenize(lm, [pair.counterfactual])
        with capture(module) as seen:
            counter_logprobs = lm.model(**counter).logits[0, -1].float().log_softmax(-1)
        counter_codes = sae.encode(seen[0][0].float())

        def patch(codes: torch.Tensor) -> torch.Tensor:
            out = codes.clone()
            out[:, index] = counter_codes[:, index]
            return out

        with edit_output(module, set_codes(sae, patch)):
            logprobs = lm.model(**tokenize(lm, [pair.clean])).logits[0, -1].float().log_softmax(-1)
    return float(kl_divergence(counter_logprobs, logprobs))
