"""Core metrics of an SAE on held-out tokens, with SAEBench's names.

Reconstruction (streamed over activation batches): ``l0``; ``mse`` (per element); ``explained_variance``
= 1 - Var(x - x_hat) / Var(x); ``cossim`` and ``l2_ratio`` (mean over tokens of cos(x, x_hat) and
||x_hat|| / ||x||); ``frac_alive``. Per latent: firing frequency, max activation (the m_f that steering
scales by), mean activation when firing, and ``token_eta2``, the share of the latent's activation variance
that the current token's identity explains (eta squared over token types): a latent is **contextual** when it
is under ``CONTEXTUAL_BELOW`` (what it does depends more on the context than on the token it sits on).

Downstream (the reconstruction spliced into the LM at the SAE's hook, every position but BOS):
``ce_loss_score`` = (CE_zero - CE_sae) / (CE_zero - CE_clean) and ``kl_div_score`` = (KL_zero - KL_sae) /
KL_zero, where "zero" replaces the activation by zeros.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from sae_models.arrow import schema_of
from sae_models.lm.hooks import edit_output, hook_module
from sae_models.lm.intervene import splice, tokenize
from sae_models.lm.loading import LoadedLM
from sae_models.sae.base import SparseAutoencoder


@dataclass
class TrainedVariant:
    """The head of a ``sae_metrics`` row: the variant as trained and its width (the row itself measures the
    held-out L0 that ``SAEIdentity`` carries into every evaluation row)."""

    architecture: str
    level: float | None  # k, target L0 or L1 weight; None for baselines and external SAEs
    target_l0: float | None
    d_sae: int


@dataclass
class ReconstructionMetrics:
    l0: float
    mse: float
    explained_variance: float
    cossim: float
    l2_ratio: float
    frac_alive: float
    dead_fraction: float
    tokens: int  # held-out tokens the metrics are computed on


@dataclass
class HeldOutSplit:
    """The document split every held-out figure rests on: documents held out by a seeded hash of their id."""

    holdout_fraction: float  # configured share of documents
    held_out_docs: int
    train_docs: int
    train_tokens: int


CONTEXTUAL_BELOW = 0.5  # token_eta2 under this: the token's identity explains under half of the variance
LATENT_STATS_SCHEMA = pa.schema([("latent", pa.int32()), ("firing_frequency", pa.float64()),
                                 ("max_activation", pa.float32()), ("mean_activation", pa.float64()),
                                 ("token_eta2", pa.float64()), ("contextual", pa.bool_())])


@dataclass
class LatentStats:
    firing_frequency: np.ndarray  # [d_sae] fraction of tokens on which the latent is > 0
    max_activation: np.ndarray  # [d_sae]
    mean_activation: np.ndarray  # [d_sae] mean over the tokens where it fires (0 if never)
    token_eta2: np.ndarray  # [d_sae] variance share explained by token identity; NaN for a latent that never fires

    def to_arrow(self) -> pa.Table:
        """One row per latent (the ``latent_stats`` table); ``token_eta2`` and ``contextual`` are null for a
        latent that never fired."""
        eta2 = pa.array(self.token_eta2, pa.float64(), mask=np.isnan(self.token_eta2))
        contextual = pa.array(self.token_eta2 < CONTEXTUAL_BELOW, pa.bool_(), mask=np.isnan(self.token_eta2))
        return pa.table({"latent": np.arange(len(self.firing_frequency), dtype=np.int32),
                         "firing_frequency": self.firing_frequency, "max_activation": self.max_activation,
                         "mean_activation": self.mean_activation, "token_eta2": eta2, "contextual": contextual},
                        schema=LATENT_STATS_SCHEMA)


class TokenIdentityShare:
    """Streams eta squared over token types per latent: SS_between / SS_total of the codes, where SS_between =
    sum_t S_t^2 / n_t - S^2 / N over token types t (S_t the codes' sum on type t, n_t its count). Only the
    nonzero codes are accumulated, as (type, latent) sums, so a sparse code over a large vocabulary stays small."""

    def __init__(self, d_sae: int):
        self.d_sae = d_sae
        self.keys = torch.zeros(0, dtype=torch.long)  # type * d_sae + latent, sorted and unique
        self.sums = torch.zeros(0, dtype=torch.float64)
        self.type_counts: dict[int, int] = {}
        self.total = torch.zeros(d_sae, dtype=torch.float64)
        self.squares = torch.zeros(d_sae, dtype=torch.float64)
        self.n = 0

    def add(self, token_ids: torch.Tensor, codes: torch.Tensor) -> None:
        rows, latents = codes.nonzero(as_tuple=True)
        keys = torch.cat([self.keys, token_ids.long()[rows] * self.d_sae + latents])
        values = torch.cat([self.sums, codes[rows, latents].double()])
        self.keys, inverse = torch.unique(keys, return_inverse=True)
        self.sums = torch.zeros(len(self.keys), dtype=torch.float64).index_add_(0, inverse, values)
        types, counts = torch.unique(token_ids, return_counts=True)
        for t, c in zip(types.tolist(), counts.tolist(), strict=True):
            self.type_counts[t] = self.type_counts.get(t, 0) + c
        self.total += codes.sum(0).double()
        self.squares += codes.double().pow(2).sum(0)
        self.n += len(token_ids)

    def eta2(self) -> np.ndarray:
        """[d_sae] eta squared; NaN where a latent has no variance (it never fired)."""
        counts = torch.tensor([self.type_counts[int(t)] for t in (self.keys // self.d_sae).tolist()],
                              dtype=torch.float64)
        between = torch.zeros(self.d_sae, dtype=torch.float64).index_add_(
            0, self.keys % self.d_sae, self.sums.pow(2) / counts)
        mean_square = self.total.pow(2) / max(self.n, 1)
        ss_total = self.squares - mean_square
        eta2 = ((between - mean_square) / ss_total.clamp_min(1e-30)).clamp(0, 1)
        return torch.where(ss_total > 1e-12 * self.squares.clamp_min(1e-30), eta2, torch.nan).numpy()


@torch.no_grad()
def reconstruction_metrics(sae: SparseAutoencoder, batches: Iterable[tuple[np.ndarray | torch.Tensor, torch.Tensor]]
                           ) -> tuple[ReconstructionMetrics, LatentStats]:
    """Core metrics and per-latent statistics from (token ids [n], activations [n, d]) batches."""
    f = sae.cfg.d_sae
    fires, act_sum = torch.zeros(f, dtype=torch.float64), torch.zeros(f, dtype=torch.float64)
    act_max = torch.zeros(f)
    n = 0
    sums = dict.fromkeys(("l0", "sq_err", "cos", "ratio"), 0.0)
    err_sum = err_sq = x_sum = x_sq = 0.0
    identity = TokenIdentityShare(f)
    for token_ids, x in batches:
        x = x.float()
        codes = sae.encode(x)
        identity.add(torch.tensor(token_ids), codes.clamp_min(0))
        x_hat = sae.decode(codes)
        err = x - x_hat
        active = codes > 0
        n += x.shape[0]
        sums["l0"] += active.sum().item()
        sums["sq_err"] += err.pow(2).sum().item()
        sums["cos"] += torch.nn.functional.cosine_similarity(x, x_hat, dim=-1).sum().item()
        sums["ratio"] += (x_hat.norm(dim=-1) / x.norm(dim=-1).clamp_min(1e-8)).sum().item()
        err_sum, err_sq = err_sum + err.sum(0).double(), err_sq + err.pow(2).sum(0).double()
        x_sum, x_sq = x_sum + x.sum(0).double(), x_sq + x.pow(2).sum(0).double()
        fires += active.sum(0).double()
        act_sum += codes.sum(0).double()
        act_max = torch.maximum(act_max, codes.max(0).values)
    if n == 0:
        raise ValueError("reconstruction metrics: no held-out tokens")
    var_err = (err_sq / n - (err_sum / n).pow(2)).sum().item()
    var_x = (x_sq / n - (x_sum / n).pow(2)).sum().item()
    frac_alive = (fires > 0).double().mean().item()
    metrics = ReconstructionMetrics(
        l0=sums["l0"] / n, mse=sums["sq_err"] / (n * sae.cfg.d_in),
        explained_variance=1 - var_err / max(var_x, 1e-12), cossim=sums["cos"] / n, l2_ratio=sums["ratio"] / n,
        frac_alive=frac_alive, dead_fraction=1 - frac_alive, tokens=n,
    )
    stats = LatentStats((fires / n).numpy(), act_max.numpy(),
                        (act_sum / fires.clamp_min(1)).numpy(), identity.eta2())
    return metrics, stats


MIN_CE_GAP = 0.1  # nats; an untrained LM (a control twin: 0.03 and below 0) barely notices its layer zeroed


@dataclass
class DownstreamMetrics:
    ce_loss_score: float | None  # null when zero-ablation costs under MIN_CE_GAP nats: the ratio would be noise
    kl_div_score: float
    ce_clean: float
    ce_sae: float
    ce_zero: float
    kl_sae: float
    kl_zero: float


SAE_METRICS_SCHEMA = schema_of(TrainedVariant, ReconstructionMetrics, HeldOutSplit, DownstreamMetrics)


def _next_token_logprobs(lm: LoadedLM, module, ids, mask, edit=None) -> torch.Tensor:
    """Log-probabilities of the next token at every position but the last, with ``edit`` spliced in."""
    if edit is None:
        return lm.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)
    with edit_output(module, splice(edit)):
        return lm.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float().log_softmax(-1)


@torch.no_grad()
def downstream_metrics(sae: SparseAutoencoder, lm: LoadedLM, texts: Sequence[str], layer: int, site: str,
                       context: int = 128, batch_size: int = 16) -> DownstreamMetrics:
    module = hook_module(lm.model, layer, site)
    totals = dict.fromkeys(("ce_clean", "ce_sae", "ce_zero", "kl_sae", "kl_zero"), 0.0)
    count = 0
    shape = (-1, sae.cfg.d_in)
    for start in range(0, len(texts), batch_size):
        enc = tokenize(lm, texts[start:start + batch_size], padding_side="right", max_length=context)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        target, valid = ids[:, 1:], mask[:, 1:].bool()
        logp_clean = _next_token_logprobs(lm, module, ids, mask)
        for name, edit in (("sae", lambda h: sae(h.float().reshape(shape)).reshape(h.shape)),
                           ("zero", torch.zeros_like)):
            logp = _next_token_logprobs(lm, module, ids, mask, edit)
            totals[f"ce_{name}"] += -logp.gather(-1, target[..., None])[..., 0][valid].sum().item()
            kl = (logp_clean.exp() * (logp_clean - logp)).sum(-1)
            totals[f"kl_{name}"] += kl[valid].sum().item()
        totals["ce_clean"] += -logp_clean.gather(-1, target[..., None])[..., 0][valid].sum().item()
        count += int(valid.sum())
    if count == 0:
        raise ValueError("downstream metrics: no tokens to score")
    t = {k: v / count for k, v in totals.items()}
    return DownstreamMetrics(
        ce_loss_score=((t["ce_zero"] - t["ce_sae"]) / (t["ce_zero"] - t["ce_clean"])
                       if t["ce_zero"] - t["ce_clean"] >= MIN_CE_GAP else None),
        kl_div_score=(t["kl_zero"] - t["kl_sae"]) / max(t["kl_zero"], 1e-12),
        **t,
    )
