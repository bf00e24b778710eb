"""Latent examples for autointerp (SAEBench's protocol), gathered in one streaming pass.

Per latent: the ``n_top`` top-activating windows, ``n_importance`` windows sampled with probability
proportional to their activation (weighted reservoir sampling, A-Res: keep the largest u^(1/w)), and
``n_random`` uniformly random windows. A window is 2 * half_window + 1 tokens of one document centred on a
token; each document contributes at most one window per latent and kind (its maximum, its random token),
so windows never overlap. Every kind is a bounded per-latent reservoir merged batch by batch with topk:
memory is O(latents x examples x window), whatever the corpus size.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from sae_models.evals.config import ExampleConfig

PAD_TOKEN = -1  # window positions outside the document


@dataclass
class WindowSet:
    """Windows per latent: tokens [L, n, W] (PAD_TOKEN outside the doc), acts [L, n, W], score [L, n]
    (the window's max activation), doc [L, n] and pos [L, n] (the centre token's position in its document);
    slots never filled have doc -1."""

    tokens: np.ndarray
    acts: np.ndarray
    score: np.ndarray
    doc: np.ndarray
    pos: np.ndarray

    def filled(self, latent: int) -> np.ndarray:
        """Slot indices of the latent's windows, highest score first."""
        slots = np.flatnonzero(self.doc[latent] >= 0)
        return slots[np.argsort(-self.score[latent, slots], kind="stable")]


@dataclass
class LatentExamples:
    latents: np.ndarray  # [L] latent indices, in the order of the window sets
    top: WindowSet
    importance: WindowSet
    random: WindowSet


class _Reservoir:
    """Per latent, the ``k`` candidates with the largest keys seen so far."""

    def __init__(self, n_latents: int, k: int, width: int):
        self.keys = torch.full((n_latents, k), -torch.inf)
        self.tokens = torch.full((n_latents, k, width), PAD_TOKEN, dtype=torch.int32)
        self.acts = torch.zeros(n_latents, k, width)
        self.doc = torch.full((n_latents, k), -1, dtype=torch.int64)
        self.pos = torch.full((n_latents, k), -1, dtype=torch.int64)

    def offer(self, keys: torch.Tensor, tokens: torch.Tensor, acts: torch.Tensor, doc: torch.Tensor,
              pos: torch.Tensor) -> None:
        """keys [L, m], tokens and acts [L, m, W], doc and pos [L, m]."""
        all_keys = torch.cat([self.keys, keys], dim=1)
        best = all_keys.topk(self.keys.shape[1], dim=1).indices

        def take(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
            index = best.view(*best.shape, *([1] * (old.dim() - 2))).expand(-1, -1, *old.shape[2:])
            return torch.cat([old, new], 1).gather(1, index)

        self.tokens, self.acts = take(self.tokens, tokens), take(self.acts, acts)
        self.doc, self.pos = take(self.doc, doc), take(self.pos, pos)
        self.keys = all_keys.gather(1, best)

    def windows(self) -> WindowSet:
        filled = self.keys > -torch.inf
        return WindowSet(self.tokens.numpy(), self.acts.numpy(), (self.acts.amax(-1) * filled).numpy(),
                         torch.where(filled, self.doc, -1).numpy(), torch.where(filled, self.pos, -1).numpy())


def documents(rows: Iterable[tuple[dict, torch.Tensor]]) -> Iterator[tuple[int, np.ndarray, np.ndarray, torch.Tensor]]:
    """(doc_id, positions, token_ids, acts) per document from row groups in storage order, where a document
    may straddle two row groups."""
    pending: tuple[int, list, list, list] | None = None
    for keys, acts in rows:
        doc_ids = keys["doc_id"]
        starts = np.flatnonzero(np.r_[True, doc_ids[1:] != doc_ids[:-1]])
        for i, start in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else len(doc_ids)
            doc = int(doc_ids[start])
            part = (keys["pos"][start:stop], keys["token_id"][start:stop], acts[start:stop])
            if pending is not None and pending[0] == doc:
                for store, piece in zip(pending[1:], part, strict=True):
                    store.append(piece)
                continue
            if pending is not None:
                yield _finish(pending)
            pending = (doc, [part[0]], [part[1]], [part[2]])
    if pending is not None:
        yield _finish(pending)


def _finish(pending) -> tuple[int, np.ndarray, np.ndarray, torch.Tensor]:
    doc, pos, tok, acts = pending
    return doc, np.concatenate(pos), np.concatenate(tok), torch.cat(acts)


def _window_index(centre: torch.Tensor, length: torch.Tensor, half: int,
                  longest: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token indices [..., W] around ``centre`` (clamped into the batch) and a mask of those inside
    the document [0, length)."""
    offsets = torch.arange(-half, half + 1)
    idx = centre[..., None] + offsets
    inside = (idx >= 0) & (idx < length[..., None])
    return idx.clamp(0, longest - 1), inside


@torch.no_grad()
def gather_examples(encode, rows: Iterable[tuple[dict, torch.Tensor]], latents: np.ndarray,
                    cfg: ExampleConfig = ExampleConfig(), docs_per_batch: int = 64) -> LatentExamples:
    """``encode`` maps activations [n, d] to codes [n, d_sae]; ``rows`` yields (keys with doc_id, pos and
    token_id, activations) in storage order (``ActivationReader.rows``)."""
    lat = torch.as_tensor(latents, dtype=torch.long)
    reservoirs = {kind: _Reservoir(len(lat), n, cfg.width) for kind, n in
                  (("top", cfg.n_top), ("importance", cfg.n_top + cfg.n_importance), ("random", cfg.n_random))}
    gen = torch.Generator().manual_seed(cfg.seed)
    batch: list = []
    for doc in documents(rows):
        batch.append(doc)
        if len(batch) == docs_per_batch:
            _offer_batch(batch, encode, lat, reservoirs, cfg, gen)
            batch = []
    if batch:
        _offer_batch(batch, encode, lat, reservoirs, cfg, gen)
    top = reservoirs["top"].windows()
    return LatentExamples(latents=np.asarray(latents), top=top,
                          importance=_excluding(reservoirs["importance"].windows(), top, cfg.n_importance),
                          random=reservoirs["random"].windows())


def gather_sae_examples(sae, rows: Iterable[tuple[dict, torch.Tensor]], latents: np.ndarray,
                        cfg: ExampleConfig = ExampleConfig(), device: str = "cpu") -> LatentExamples:
    """``gather_examples`` with the codes of ``sae`` (encoded on ``device``)."""
    sae = sae.to(device)
    with torch.no_grad():
        return gather_examples(lambda x: sae.encode(x.to(device)).cpu(), rows, latents, cfg)


def _offer_batch(batch, encode, lat, reservoirs, cfg: ExampleConfig, gen) -> None:
    """Encode a batch of documents in one call and offer each reservoir, per latent, the batch's best
    candidates only: of the batch, no more than a reservoir's size can enter it, so windows are cut for those
    alone (the same reservoirs as offering every document, at a fraction of the indexing)."""
    n_docs, longest = len(batch), max(len(b[1]) for b in batch)
    lengths = torch.tensor([len(b[1]) for b in batch])
    row = torch.repeat_interleave(torch.arange(n_docs), lengths)
    col = torch.arange(len(row)) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
    tokens = torch.full((n_docs, longest), PAD_TOKEN, dtype=torch.int32)
    tokens[row, col] = torch.from_numpy(np.concatenate([b[2] for b in batch]).astype(np.int32))
    positions = torch.full((n_docs, longest), -1, dtype=torch.int64)
    positions[row, col] = torch.from_numpy(np.concatenate([b[1] for b in batch]).astype(np.int64))
    codes = torch.zeros(n_docs, longest, len(lat))
    codes[row, col] = encode(torch.cat([b[3] for b in batch]))[:, lat].float()
    doc_ids = torch.tensor([b[0] for b in batch])
    peak, where = codes.max(dim=1)  # [D, L]
    weights = peak.T  # [L, D]
    u = torch.rand(weights.shape, generator=gen)
    random_pos = (torch.rand(n_docs, generator=gen) * lengths).long()
    lat_axis = torch.arange(len(lat))[:, None, None]
    for kind, keys, centre in (
        ("top", torch.where(weights > 0, weights, -torch.inf), where.T),
        ("importance", torch.where(weights > 0, u.clamp_min(1e-12).log() / weights, -torch.inf), where.T),
        ("random", torch.rand(weights.shape, generator=gen), random_pos.expand(len(lat), -1)),
    ):
        best = keys.topk(min(reservoirs[kind].keys.shape[1], n_docs), dim=1)  # [L, m]
        docs = best.indices
        centre = centre.gather(1, docs)
        idx, inside = _window_index(centre, lengths[docs], cfg.half_window, longest)  # [L, m, W]
        win_tokens = torch.where(inside, tokens[docs[..., None], idx], PAD_TOKEN)
        win_acts = torch.where(inside, codes[docs[..., None], idx, lat_axis], 0.0)
        reservoirs[kind].offer(best.values, win_tokens, win_acts, doc_ids[docs], positions[docs, centre])


def _excluding(pool: WindowSet, top: WindowSet, n: int) -> WindowSet:
    """The first ``n`` windows of ``pool`` per latent whose document is not among its top windows."""
    out = WindowSet(*(np.zeros((a.shape[0], n, *a.shape[2:]), a.dtype) for a in
                      (pool.tokens, pool.acts, pool.score, pool.doc, pool.pos)))
    out.doc[:] = -1
    out.pos[:] = -1
    out.tokens[:] = PAD_TOKEN
    for latent in range(pool.doc.shape[0]):
        keep = [j for j, d in enumerate(pool.doc[latent]) if d >= 0 and d not in set(top.doc[latent])][:n]
        for slot, j in enumerate(keep):
            for name in ("tokens", "acts", "score", "doc", "pos"):
                getattr(out, name)[latent, slot] = getattr(pool, name)[latent, j]
    return out


KINDS = ("top", "importance", "random")
EXAMPLES_SCHEMA = pa.schema([  # tokens and acts are windows of the configured width
    ("latent", pa.int32()), ("kind", pa.string()), ("rank", pa.int16()), ("doc_id", pa.int64()), ("pos", pa.int32()),
    ("score", pa.float32()), ("tokens", pa.list_(pa.int32(), 1)), ("acts", pa.list_(pa.float32(), 1)),
])


def to_arrow(examples: LatentExamples, keep: np.ndarray | None = None) -> pa.Table:
    """One row per filled window: latent, kind, rank (by score within the kind), doc_id, pos, score, and the
    window's token ids and activations (PAD_TOKEN / 0 outside the document). ``keep`` masks latents."""
    keep = np.ones(len(examples.latents), bool) if keep is None else keep
    cols: dict[str, list] = {k: [] for k in ("latent", "kind", "rank", "doc_id", "pos", "score", "tokens", "acts")}
    for kind in KINDS:
        ws: WindowSet = getattr(examples, kind)
        for i in np.flatnonzero(keep):
            for rank, s in enumerate(ws.filled(i)):
                for name, value in (("latent", examples.latents[i]), ("kind", kind), ("rank", rank),
                                    ("doc_id", ws.doc[i, s]), ("pos", ws.pos[i, s]), ("score", ws.score[i, s]),
                                    ("tokens", ws.tokens[i, s]), ("acts", ws.acts[i, s])):
                    cols[name].append(value)
    width = examples.top.tokens.shape[-1]
    return pa.table({
        "latent": pa.array(cols["latent"], pa.int32()), "kind": pa.array(cols["kind"], pa.string()),
        "rank": pa.array(cols["rank"], pa.int16()), "doc_id": pa.array(cols["doc_id"], pa.int64()),
        "pos": pa.array(cols["pos"], pa.int32()), "score": pa.array(cols["score"], pa.float32()),
        "tokens": pa.array([t.astype(np.int32) for t in cols["tokens"]], pa.list_(pa.int32(), width)),
        "acts": pa.array([a.astype(np.float32) for a in cols["acts"]], pa.list_(pa.float32(), width)),
    })


def from_arrow(table: pa.Table, cfg: ExampleConfig) -> LatentExamples:
    """The inverse of ``to_arrow``: window sets per latent, in increasing latent order."""
    latents = np.unique(table.column("latent").to_numpy())
    row_of = {int(x): i for i, x in enumerate(latents)}
    sizes = {"top": cfg.n_top, "importance": cfg.n_importance, "random": cfg.n_random}
    sets = {k: _Reservoir(len(latents), n, cfg.width).windows() for k, n in sizes.items()}
    data = {c: table.column(c).to_numpy(zero_copy_only=False) for c in ("latent", "kind", "rank", "doc_id", "pos",
                                                                       "score")}
    tokens = table.column("tokens").combine_chunks().values.to_numpy().reshape(-1, cfg.width)
    acts = table.column("acts").combine_chunks().values.to_numpy().reshape(-1, cfg.width)
    for r in range(table.num_rows):
        ws, i, slot = sets[data["kind"][r]], row_of[int(data["latent"][r])], int(data["rank"][r])
        if slot >= ws.doc.shape[1]:
            raise ValueError(f"latent examples: {data['kind'][r]} rank {slot} exceeds the configured count")
        ws.tokens[i, slot], ws.acts[i, slot], ws.score[i, slot] = tokens[r], acts[r], data["score"][r]
        ws.doc[i, slot], ws.pos[i, slot] = data["doc_id"][r], data["pos"][r]
    return LatentExamples(latents=latents, **sets)
