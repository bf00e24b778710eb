"""What a feature dashboard shows of a latent beyond its examples and scores (SAEDashboard's and Neuronpedia's
panels): the histogram of its activations where it fires on held-out tokens, and the logit lens of its decoder
direction, the tokens it promotes most and least with their logits.

The histogram has ``bins`` equal bins from 0 to the latent's largest held-out activation (``latent_stats``), so
it is read in one pass over at most ``histogram_tokens`` held-out tokens; a latent that never fires has none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from sae_models.arrow import schema_of
from sae_models.evals.config import DashboardConfig
from sae_models.lm.intervene import logit_lens
from sae_models.lm.loading import LoadedLM


class ProfileError(ValueError):
    """Inputs the profiles cannot be computed from, named."""


@dataclass
class LatentProfile:
    """One row of ``latent_profiles``."""

    latent: int
    histogram_max: float  # the upper edge of the last bin: the latent's largest held-out activation
    histogram: list[int]  # held-out tokens where it fires, per equal bin of (0, histogram_max]
    histogram_tokens: int  # the held-out tokens counted (the first [dashboards] histogram_tokens)
    lens_top_tokens: list[str]  # the logit lens of the unit decoder direction: the most promoted tokens (as text)
    lens_top_logits: list[float]
    lens_bottom_tokens: list[str]  # the most suppressed tokens, the most suppressed first
    lens_bottom_logits: list[float]


LATENT_PROFILES_SCHEMA = schema_of(LatentProfile)


@dataclass(frozen=True)
class ProfileSummary:
    tokens: int  # held-out tokens the histograms count
    seconds: float


@dataclass(frozen=True)
class ProfileResult:
    rows: list[LatentProfile]
    summary: ProfileSummary


def activation_histograms(sae, batches: Iterable[torch.Tensor], max_activation: torch.Tensor, bins: int,
                          max_tokens: int) -> tuple[torch.Tensor, int]:
    """([d_sae, bins] counts of the firing codes per equal bin of (0, max_activation], tokens read): each code
    above 0 falls in bin floor(code / max x bins), the largest in the last. Binned where the SAE is; only the
    counts leave it."""
    device = sae.W_dec.device
    d_sae = len(max_activation)
    counts = torch.zeros(d_sae * bins, dtype=torch.long, device=device)
    top = max_activation.to(device, torch.float64).clamp_min(torch.finfo(torch.float32).tiny)
    seen = 0
    with torch.inference_mode():
        for x in batches:
            x = x[:max_tokens - seen]
            codes = sae.encode(x.to(device, sae.W_dec.dtype))
            rows, latents = codes.nonzero(as_tuple=True)
            which = (codes[rows, latents].double() / top[latents] * bins).long().clamp(0, bins - 1)
            counts += torch.bincount(latents * bins + which, minlength=d_sae * bins)
            seen += len(x)
            if seen >= max_tokens:
                break
    return counts.view(d_sae, bins).cpu(), seen


def lens_extremes(lm: LoadedLM, sae, n: int, batch_size: int = 256) -> tuple[torch.Tensor, ...]:
    """(top ids, top logits, bottom ids, bottom logits), each [d_sae, n], of every latent's unit decoder
    direction through the logit lens: the final norm, the unembedding and the family's logit soft-cap, as
    ``feature_scores`` reads it (SAEDashboard's logit table is W_dec W_U alone)."""
    directions = sae.decoder_directions()
    parts: list[tuple[torch.Tensor, ...]] = []
    with torch.inference_mode():
        for lo in range(0, len(directions), batch_size):
            logits = logit_lens(lm, directions[lo:lo + batch_size])
            top, bottom = logits.topk(n, dim=-1), logits.topk(n, dim=-1, largest=False)
            parts.append((top.indices.cpu(), top.values.cpu(), bottom.indices.cpu(), bottom.values.cpu()))
    return tuple(torch.cat(column) for column in zip(*parts, strict=True))


def run_latent_profiles(lm: LoadedLM, sae, batches: Iterable[torch.Tensor], max_activation: dict[int, float],
                        cfg: DashboardConfig, log: Callable[[str], None] | None = None) -> ProfileResult:
    """Every latent's profile: its activation histogram on held-out ``batches`` (raw activations, [n, d]) and
    its logit lens's extremes, the tokens as they read in text. ``max_activation``: each latent's largest held-out
    activation (``latent_stats``), by latent."""
    from sae_models.evals.autointerp import TokenText

    start = time.perf_counter()
    d_sae = sae.W_dec.shape[0]
    if sorted(max_activation) != list(range(d_sae)):
        missing = sorted(set(range(d_sae)) - set(max_activation))[:5]
        raise ProfileError(f"latent_stats has {len(max_activation)} latents, the SAE {d_sae}"
                           + (f" (missing e.g. {missing})" if missing else ""))
    top = torch.tensor([max_activation[f] for f in range(d_sae)], dtype=torch.float64)
    counts, tokens = activation_histograms(sae, batches, top, cfg.histogram_bins, cfg.histogram_tokens)
    if log:
        log(f"profiles: histograms of {d_sae} latents over {tokens:,} held-out tokens")
    top_ids, top_logits, bottom_ids, bottom_logits = lens_extremes(lm, sae, cfg.lens_tokens)
    text = TokenText(lm.tokenizer)
    rows = [LatentProfile(f, float(top[f]), counts[f].tolist(), tokens, text(top_ids[f].tolist()),
                          [round(v, 4) for v in top_logits[f].tolist()], text(bottom_ids[f].tolist()),
                          [round(v, 4) for v in bottom_logits[f].tolist()])
            for f in range(d_sae)]
    return ProfileResult(rows, ProfileSummary(tokens, time.perf_counter() - start))
