"""true_steerability: how far steering a latent moves the toy LM toward the latent's concept, without a judge.

On held-out instruction documents (``question : tell me about <topic> . answer : ...``), teacher-forced: at each
answer position, the slot the grammar filled there (a noun, a verb, an adjective, a determiner...: the role label
of the word the document holds) and the words the grammar labels with the concept in that slot (a topic's nouns
in a noun slot, a sentiment's adjectives in an adjective slot, a word where it can stand). The LM's
next-token probability mass on those words, p_c, is compared with and without the latent's steering vector
(factor x m_f x d_f added at every position, exactly as g steers), over the positions where the concept has
words. The instruction topic's words in the same slots keep at least ``KEEP`` of their unsteered mass p_i,
else the answer has left its instruction and the factor does not count. Per latent: the factor is chosen on
dev documents (the largest rise of p_c among the factors that keep p_i), the score is the rise on test
documents at that factor; 0 when no factor keeps the instruction; missing (None) when the concept has no word
in any answer slot (a name, a prompt word), since nothing there can be measured.

The concept is the latent's best ground-truth feature (``latent_purity``: a topic, a sentiment, a role or a
word) and its words are the grammar's: no judge word list, sentence pattern, explanation or judge-chosen
factor enters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sae_models.arrow import schema_of
from sae_models.toyworld.grammar import (
    COPULA,
    DETERMINERS,
    GENERIC_NOUNS,
    GENERIC_VERBS,
    NAMES,
    NEGATION,
    PREPOSITIONS,
    SENTIMENTS,
    TOPICS,
)

KEEP = 0.5  # the instruction topic's words keep at least this share of their unsteered probability
SLOTS = ("noun", "verb", "adj", "determiner", "preposition", "punctuation", "name")
_ROLE_SLOT = {"subject": "noun", "object": "noun", "verb": "verb", "adjective": "adj", "determiner": "determiner",
              "preposition": "preposition", "punctuation": "punctuation", "name": "name"}


@dataclass(frozen=True)
class ProbeDocument:
    """A held-out instruction document: its words, the slot of each word (None outside the answer) and the
    instruction's topic."""

    words: list[str]
    slots: list[str | None]
    topic: str


@dataclass
class SteerabilityRow:
    """One row of ``true_steerability``: one steered latent's judge-free steering effect."""

    latent: int
    concept: str  # its best ground-truth feature (latent_purity), e.g. topic:food, sentiment:positive, word:the
    factor: float | None  # chosen on dev: the largest rise of p_c keeping the instruction; None if none keeps it
    rise_dev: float | None  # mean p_c steered - unsteered over the concept's slots, dev documents, at the factor
    rise_test: float | None  # the same on test documents: the latent's true steerability (0 when no factor
    #                          keeps the instruction; None when its concept has no word in any answer slot)
    keep_test: float | None  # p_i steered / unsteered on test documents at the factor
    positions: int  # test answer positions where the concept has words


STEERABILITY_SCHEMA = schema_of(SteerabilityRow)


def slot_words() -> dict[str, set[str]]:
    """Every word the grammar can put in each slot."""
    topical = {pos: {w for vocab in TOPICS.values() for w in vocab[pos]} for pos in ("noun", "verb", "adj")}
    return {"noun": topical["noun"] | set(GENERIC_NOUNS), "verb": topical["verb"] | set(GENERIC_VERBS) | {COPULA},
            "adj": topical["adj"] | {w for ws in SENTIMENTS.values() for w in ws},
            "determiner": set(DETERMINERS), "preposition": set(PREPOSITIONS), "punctuation": {".", ","},
            "name": set(NAMES)}


def concept_words(concept: str) -> dict[str, set[str]]:
    """The words the grammar labels with ``concept`` in each slot (``topic:food``, ``sentiment:positive``,
    ``role:determiner``, ``word:the``); a slot the concept has no word for is absent."""
    kind, name = concept.split(":", 1)
    if kind == "topic":
        return {slot: set(TOPICS[name][pos]) for slot, pos in (("noun", "noun"), ("verb", "verb"), ("adj", "adj"))}
    if kind == "sentiment":
        return {"adj": set(SENTIMENTS[name])}
    if kind == "role":
        slot = _ROLE_SLOT[name]
        return {slot: slot_words()[slot]}
    return {slot: {name} for slot, words in slot_words().items() if name in words}


def probe_document(words: Sequence[str], labels: Sequence[Sequence[str]], topic: str) -> ProbeDocument:
    """The slots of an instruction document's answer (the words after ``answer :``) from their role labels. After
    ``not`` an adjective expresses the other sentiment, so that slot is kept apart (``adj_negated``)."""
    start = next(i for i in range(1, len(words)) if words[i - 1] == "answer" and words[i] == ":") + 1
    slots: list[str | None] = [None] * len(words)
    for i in range(start, len(words)):
        role = next((lab.split(":", 1)[1] for lab in labels[i] if lab.startswith("role:")), None)
        slot = _ROLE_SLOT.get(role) if role else None
        slots[i] = "adj_negated" if slot == "adj" and words[i - 1] == NEGATION else slot
    return ProbeDocument(list(words), slots, topic)


def _masks(concept: str, vocab: dict[str, int], size: int) -> dict[str, torch.Tensor]:
    """Per slot, a [V] 0/1 mask of the concept's words there (a negated adjective slot: the other sentiment's
    adjectives carry a sentiment concept)."""
    words = concept_words(concept)
    if concept.startswith("sentiment:"):
        other = next(s for s in SENTIMENTS if s != concept.split(":", 1)[1])
        words["adj_negated"] = set(SENTIMENTS[other])
    elif "adj" in words:
        words["adj_negated"] = words["adj"]
    out = {}
    for slot, ws in words.items():
        mask = torch.zeros(size)
        mask[[vocab[w] for w in ws if w in vocab]] = 1.0
        out[slot] = mask
    return out


class SteerabilityProbe:
    """Held-out instruction documents, tokenized once, with per-position slot masks: p_c and p_i of any batch of
    rows steered at (``layer``, ``site``). At ``resid_post`` the documents' states there are computed once and
    each steered row runs only the blocks above (``intervene.resume_from``); elsewhere the whole model reruns
    with the vector added. Logits are computed only at the positions that predict an answer slot
    (``logits_to_keep``, a third of the work saved; on the pinned CPU the kept logits equal the full ones bit for
    bit, which a test checks). Masks and indices live on the model's device."""

    def __init__(self, lm, docs: Sequence[ProbeDocument], layer: int, site: str):
        from sae_models.lm.extract import forward_to
        from sae_models.lm.hooks import hook_module
        from sae_models.lm.intervene import tokenize

        self.lm, self.docs, self.layer = lm, list(docs), layer
        self.module = hook_module(lm.model, layer, site)
        self.vocab = dict(lm.tokenizer.get_vocab())
        self.size = lm.model.get_output_embeddings().weight.shape[0]
        self.enc = tokenize(lm, [" ".join(d.words) for d in docs])
        lengths = self.enc["attention_mask"].sum(1).tolist()
        offset = int(lengths[0]) - len(docs[0].words)  # BOS: word i is token i + offset
        if any(n - len(d.words) != offset for n, d in zip(lengths, docs, strict=True)):
            raise ValueError("true_steerability needs a tokenizer with one token per word (the toy world's)")
        width = self.enc["input_ids"].shape[1]
        self.slot_of = [[None] * width for _ in docs]  # the slot predicted at each logit position
        for r, d in enumerate(docs):
            for i, slot in enumerate(d.slots):
                if slot is not None and i + offset - 1 >= 0:
                    self.slot_of[r][i + offset - 1] = slot
        self.keep = torch.tensor([t for t in range(width) if any(slots[t] for slots in self.slot_of)],
                                 dtype=torch.long, device=lm.device)
        self.instruction = torch.stack([self._mask_grid(_masks(f"topic:{d.topic}", self.vocab, self.size), r)
                                        for r, d in enumerate(docs)]).to(lm.device)
        self._grids: dict[str, torch.Tensor] = {}
        self.hidden = None
        if site == "resid_post":
            with torch.inference_mode():
                self.hidden = forward_to(lm, self.module, self.enc["input_ids"], self.enc["attention_mask"])

    def _mask_grid(self, masks: dict[str, torch.Tensor], row: int) -> torch.Tensor:
        """[K, V]: the concept's word mask at each kept logit position of document ``row`` (zeros elsewhere)."""
        grid = torch.zeros(len(self.keep), self.size)
        for k, t in enumerate(self.keep.tolist()):
            slot = self.slot_of[row][t]
            if slot in masks:
                grid[k] = masks[slot]
        return grid

    def concept_grid(self, concept: str) -> torch.Tensor:
        """[docs, K, V] the concept's word masks at the kept positions (built once per concept: latents share)."""
        if concept not in self._grids:
            masks = _masks(concept, self.vocab, self.size)
            self._grids[concept] = torch.stack([self._mask_grid(masks, r) for r in range(len(self.docs))]).to(
                self.lm.device)
        return self._grids[concept]

    @torch.no_grad()
    def probabilities(self, vectors: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """[len(rows), K, V] next-token probabilities at the kept positions of documents ``rows``, with
        ``vectors`` [len(rows), d] added at every position of the hook point."""
        from sae_models.lm.hooks import edit_output
        from sae_models.lm.intervene import add_vectors, resume_from

        enc = {k: v[rows] for k, v in self.enc.items()} | {"logits_to_keep": self.keep, "use_cache": False}
        with torch.inference_mode():
            if self.hidden is not None:
                with resume_from(self.lm.model, self.layer, self.hidden[rows] + vectors[:, None, :]):
                    logits = self.lm.model(**enc).logits
            else:
                with edit_output(self.module, add_vectors(vectors)):
                    logits = self.lm.model(**enc).logits
        return logits.float().softmax(-1)

    def mass(self, probs: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """[..., T]: the probability on ``grid``'s words at every position (0 where none is kept). The sums are
        laid out over all T positions, so every reduction over positions adds the same terms in the same order
        as on full logits."""
        kept = (probs * grid).sum(-1)
        return kept.new_zeros(*kept.shape[:-1], len(self.slot_of[0])).index_copy_(-1, self.keep, kept)


@dataclass(frozen=True)
class SteeredLatent:
    latent: int
    magnitude: float  # m_f, as steering uses it
    concept: str


def true_steerability(probe: SteerabilityProbe, directions: torch.Tensor, latents: Sequence[SteeredLatent],
                      factors: Sequence[float], batch_size: int = 256) -> list[SteerabilityRow]:
    """Per latent, the rise of p_c at the dev-chosen factor on the test documents (even-numbered documents are
    dev, odd ones test). ``directions`` are the SAE's unit decoder directions [d_sae, d]. One forward pass per
    latent holds every factor x document row (``batch_size`` rows at most)."""
    n_docs, n_factors = len(probe.docs), len(factors)
    dev = torch.arange(n_docs) % 2 == 0
    base = probe.probabilities(directions.new_zeros(n_docs, directions.shape[1]), torch.arange(n_docs))
    base_i = probe.mass(base, probe.instruction)  # [docs, T]
    docs = torch.arange(n_docs).repeat(n_factors)  # rows: factor-major
    scale = torch.tensor(factors, dtype=torch.float32, device=directions.device).repeat_interleave(n_docs)
    out = []
    for item in latents:
        grid = probe.concept_grid(item.concept)  # [docs, K, V]
        where = probe.mass(grid, 1.0) > 0  # [docs, T]
        vectors = (scale * item.magnitude)[:, None] * directions[item.latent][None, :]
        probs = torch.cat([probe.probabilities(vectors[s:s + batch_size], docs[s:s + batch_size])
                           for s in range(0, len(docs), batch_size)]).view(n_factors, n_docs, *base.shape[1:])
        rise = (probe.mass(probs, grid) - probe.mass(base, grid)) * where  # [factors, docs, T]
        steered_i = probe.mass(probs, probe.instruction)
        stats = {f: {split: (_mean_over(rise[j], where, side), _ratio(steered_i[j], base_i, side))
                     for split, side in (("dev", dev), ("test", ~dev))} for j, f in enumerate(factors)}
        keeping = [f for f in factors if stats[f]["dev"][1] >= KEEP]
        best = max(keeping, key=lambda f: (stats[f]["dev"][0], -f)) if keeping else None
        positions = int(where[~dev].sum())
        if not positions or not where[dev].any():  # nothing to measure: a concept answers never hold
            out.append(SteerabilityRow(item.latent, item.concept, None, None, None, None, positions))
            continue
        if best is None:  # every factor drives the answer off its instruction
            out.append(SteerabilityRow(item.latent, item.concept, None, None, 0.0, None, positions))
            continue
        (rise_dev, _), (rise_test, keep_test) = stats[best]["dev"], stats[best]["test"]
        out.append(SteerabilityRow(item.latent, item.concept, best, rise_dev, rise_test, keep_test, positions))
    return out


def _mean_over(values: torch.Tensor, where: torch.Tensor, rows: torch.Tensor) -> float:
    n = where[rows].sum()
    return float(values[rows].sum() / n) if n > 0 else 0.0


def _ratio(steered: torch.Tensor, base: torch.Tensor, rows: torch.Tensor) -> float:
    total = base[rows].sum()
    return float(steered[rows].sum() / total) if total > 0 else 1.0


def probe_documents(corpus_rows: Sequence[dict], n: int) -> list[ProbeDocument]:
    """The first ``n`` held-out instruction documents with an answer, from corpus rows (text, labels, kind,
    topic)."""
    docs = [probe_document(r["text"].split(), r["labels"], r["topic"]) for r in corpus_rows
            if r["kind"] == "instruction" and r["labels"] and "answer" in r["text"].split()]
    if len(docs) < 2:
        raise ValueError(f"{len(docs)} held-out instruction documents: true_steerability needs at least 2")
    return docs[:n]
