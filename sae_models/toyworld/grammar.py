"""A small generative grammar whose every token carries known concepts.

Three document kinds share one lexicon:

- ``story``: a few sentences on one topic with one sentiment,
  e.g. ``the lovely puppy chased a bone near the barn .``
- ``instruction``: ``question : tell me about <topic> . answer : <sentences on that topic>``,
  the shape of the steering prompts used later.
- ``ioi``: ``when alice and bob went to the market , bob gave a gift to alice .``, where the
  indirect object (the name not repeated) is predictable: the [C23] patching task. A fixed set of name
  pairs (``HELD_OUT_IOI_PAIRS``) never occurs in any generated document; IOI is evaluated on them, so
  solving it means using the rule rather than recalling the pairs seen in training.

Concepts are ``topic:<name>`` (16), ``sentiment:<name>`` (2) and ``role:<name>`` (8), 26 in all.
Generation is a pure function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

TOPICS: dict[str, dict[str, list[str]]] = {
    "animals": {
        "noun": ["puppy", "kitten", "horse", "rabbit", "tiger", "parrot"],
        "verb": ["chased", "fed", "petted", "groomed"],
        "adj": ["furry", "wild", "tame"],
    },
    "food": {
        "noun": ["bread", "cheese", "apple", "soup", "pasta", "cake"],
        "verb": ["ate", "baked", "tasted", "sliced"],
        "adj": ["tasty", "fresh", "spicy"],
    },
    "sports": {
        "noun": ["ball", "goal", "racket", "team", "coach", "stadium"],
        "verb": ["kicked", "threw", "scored", "won"],
        "adj": ["athletic", "fast", "competitive"],
    },
    "music": {
        "noun": ["guitar", "song", "piano", "drum", "melody", "choir"],
        "verb": ["played", "sang", "tuned", "composed"],
        "adj": ["loud", "melodic", "rhythmic"],
    },
    "weather": {
        "noun": ["rain", "storm", "cloud", "snow", "wind", "thunder"],
        "verb": ["soaked", "froze", "blew", "flooded"],
        "adj": ["rainy", "cold", "windy"],
    },
    "space": {
        "noun": ["rocket", "planet", "star", "moon", "comet", "astronaut"],
        "verb": ["launched", "orbited", "explored", "landed"],
        "adj": ["cosmic", "lunar", "stellar"],
    },
    "ocean": {
        "noun": ["boat", "wave", "shark", "reef", "sailor", "whale"],
        "verb": ["sailed", "swam", "dived", "fished"],
        "adj": ["salty", "deep", "coastal"],
    },
    "computers": {
        "noun": ["laptop", "keyboard", "server", "program", "screen", "robot"],
        "verb": ["coded", "debugged", "installed", "rebooted"],
        "adj": ["digital", "virtual", "wireless"],
    },
    "medicine": {
        "noun": ["doctor", "nurse", "patient", "pill", "hospital", "vaccine"],
        "verb": ["healed", "treated", "examined", "injected"],
        "adj": ["sick", "medical", "sterile"],
    },
    "farming": {
        "noun": ["tractor", "barn", "farmer", "wheat", "cow", "field"],
        "verb": ["planted", "harvested", "plowed", "milked"],
        "adj": ["rural", "muddy", "fertile"],
    },
    "travel": {
        "noun": ["train", "ticket", "suitcase", "airport", "hotel", "passport"],
        "verb": ["booked", "packed", "visited", "toured"],
        "adj": ["foreign", "distant", "scenic"],
    },
    "school": {
        "noun": ["teacher", "student", "lesson", "pencil", "exam", "library"],
        "verb": ["studied", "taught", "graded", "read"],
        "adj": ["academic", "clever", "strict"],
    },
    "art": {
        "noun": ["painting", "brush", "canvas", "sculpture", "artist", "gallery"],
        "verb": ["painted", "sketched", "carved", "framed"],
        "adj": ["colorful", "abstract", "artistic"],
    },
    "money": {
        "noun": ["bank", "coin", "wallet", "loan", "banker", "salary"],
        "verb": ["saved", "spent", "invested", "borrowed"],
        "adj": ["rich", "costly", "cheap"],
    },
    "forest": {
        "noun": ["tree", "mushroom", "owl", "trail", "leaf", "ranger"],
        "verb": ["climbed", "hiked", "chopped", "gathered"],
        "adj": ["leafy", "shady", "mossy"],
    },
    "cooking": {
        "noun": ["chef", "oven", "kitchen", "recipe", "pan", "spoon"],
        "verb": ["stirred", "fried", "boiled", "grilled"],
        "adj": ["hot", "crispy", "greasy"],
    },
}
SENTIMENTS: dict[str, list[str]] = {
    "positive": ["lovely", "happy", "wonderful", "kind", "great", "cheerful"],
    "negative": ["awful", "sad", "terrible", "cruel", "gloomy", "nasty"],
}
GENERIC_NOUNS = ["man", "woman", "child", "friend", "thing", "family"]
GENERIC_VERBS = ["saw", "liked", "found", "wanted"]
DETERMINERS = ["the", "a", "every", "that"]
PREPOSITIONS = ["near", "with", "behind", "under"]
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
IOI_PLACES = ["market", "park", "station", "party"]
IOI_OBJECTS = ["gift", "book", "drink", "letter"]
PROMPT_WORDS = ["question", "tell", "me", "about", "answer", "when", "and", "went", "to", "gave", ",", ":", "."]
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]
ROLES = ["subject", "verb", "object", "adjective", "determiner", "preposition", "punctuation", "name"]
DOC_KINDS = ("story", "instruction", "ioi")
IOI_HOLDOUT_SEED = 1729
N_HELD_OUT_IOI_PAIRS = 9  # of the 45 unordered pairs of 10 names: 20 %, both orders of each held out
IOI_HOLDOUT_MAX_PER_NAME = 2  # each name keeps at least 7 of its 9 partners in training


def _draw_held_out_ioi_pairs(seed: int, n: int, max_per_name: int) -> tuple[tuple[str, str], ...]:
    """``n`` unordered name pairs, taken in a seeded random order, skipping a pair that would put either of
    its names in more than ``max_per_name`` held-out pairs."""
    pairs = list(combinations(NAMES, 2))
    uses = dict.fromkeys(NAMES, 0)
    chosen: list[tuple[str, str]] = []
    for i in np.random.default_rng(seed).permutation(len(pairs)):
        a, b = pairs[int(i)]
        if uses[a] < max_per_name and uses[b] < max_per_name:
            chosen.append((a, b))
            uses[a] += 1
            uses[b] += 1
            if len(chosen) == n:
                return tuple(sorted(chosen, key=lambda p: (NAMES.index(p[0]), NAMES.index(p[1]))))
    raise ValueError(f"cannot hold out {n} IOI name pairs with at most {max_per_name} per name")


HELD_OUT_IOI_PAIRS: tuple[tuple[str, str], ...] = _draw_held_out_ioi_pairs(
    IOI_HOLDOUT_SEED, N_HELD_OUT_IOI_PAIRS, IOI_HOLDOUT_MAX_PER_NAME)
"""Unordered name pairs (in ``NAMES`` order) that no generated document contains, in either order.

IOI is evaluated on these, so a model that solves it has learned the rule (the repeated name is not the
answer) rather than recalled which name followed which pair in training. Pairs, not whole names, are held
out: a name that never occurs in training keeps its untrained initial embedding, so holding out names would
test nothing useful. Every name still occurs in training IOI documents, with at least
``len(NAMES) - 1 - IOI_HOLDOUT_MAX_PER_NAME`` partners, in both positions."""


def is_held_out_ioi_pair(a: str, b: str) -> bool:
    """Whether the names ``a`` and ``b`` (in either order) form a held-out IOI pair."""
    return (a, b) in HELD_OUT_IOI_PAIRS or (b, a) in HELD_OUT_IOI_PAIRS


def ioi_pairs(held_out: bool) -> list[tuple[str, str]]:
    """Ordered name pairs ``(A, B)`` of IOI sentences: the held-out ones (both orders of each
    ``HELD_OUT_IOI_PAIRS`` entry) or the training ones (every other ordered pair of distinct names)."""
    return [(a, b) for a in NAMES for b in NAMES if a != b and is_held_out_ioi_pair(a, b) == held_out]


_IOI_TRAIN_PAIRS = ioi_pairs(held_out=False)


def concepts() -> list[str]:
    """Every ground-truth concept name, in a fixed order."""
    return (
        [f"topic:{t}" for t in TOPICS]
        + [f"sentiment:{s}" for s in SENTIMENTS]
        + [f"role:{r}" for r in ROLES]
    )


def lexicon() -> list[str]:
    """Every word the grammar can emit, deduplicated in a fixed order (special tokens excluded)."""
    words: list[str] = list(TOPICS)
    for vocab in TOPICS.values():
        for pos in ("noun", "verb", "adj"):
            words += vocab[pos]
    for adjs in SENTIMENTS.values():
        words += adjs
    words += GENERIC_NOUNS + GENERIC_VERBS + DETERMINERS + PREPOSITIONS + NAMES
    words += IOI_PLACES + IOI_OBJECTS + PROMPT_WORDS
    return list(dict.fromkeys(words))


def word_topics() -> dict[str, str]:
    """Topic of each topical content word (topic names themselves included)."""
    out = {t: t for t in TOPICS}
    for topic, vocab in TOPICS.items():
        for pos in ("noun", "verb", "adj"):
            out.update({w: topic for w in vocab[pos]})
    return out


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the generator; the defaults give a world a 4-layer model learns in minutes."""

    p_on_topic: float = 0.85
    p_adjective: float = 0.5
    p_sentiment_adjective: float = 0.6
    p_prepositional: float = 0.4
    sentences: tuple[int, int] = (3, 5)
    kind_weights: tuple[float, float, float] = (0.55, 0.25, 0.2)


@dataclass
class Document:
    """One generated document: words and, per word, the concepts it expresses."""

    kind: str
    topic: str | None
    sentiment: str | None
    words: list[str] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def emit(self, word: str, *labels: str) -> None:
        self.words.append(word)
        self.labels.append([lab for lab in labels if lab])


class ToyWorld:
    """Seeded generator of labelled documents."""

    def __init__(self, seed: int = 0, config: WorldConfig | None = None):
        self.rng = np.random.default_rng(seed)
        self.cfg = config or WorldConfig()

    def _pick(self, items: list[str]) -> str:
        return items[int(self.rng.integers(len(items)))]

    def _content_word(self, topic: str, pos: str, generic: list[str]) -> tuple[str, str]:
        if self.rng.random() < self.cfg.p_on_topic:
            return self._pick(TOPICS[topic][pos]), f"topic:{topic}"
        return self._pick(generic), ""

    def _noun_phrase(self, doc: Document, topic: str, sentiment: str, role: str) -> None:
        doc.emit(self._pick(DETERMINERS), "role:determiner")
        if self.rng.random() < self.cfg.p_adjective:
            if self.rng.random() < self.cfg.p_sentiment_adjective:
                doc.emit(self._pick(SENTIMENTS[sentiment]), "role:adjective", f"sentiment:{sentiment}")
            else:
                doc.emit(self._pick(TOPICS[topic]["adj"]), "role:adjective", f"topic:{topic}")
        noun, topic_label = self._content_word(topic, "noun", GENERIC_NOUNS)
        doc.emit(noun, f"role:{role}", topic_label)

    def _sentence(self, doc: Document, topic: str, sentiment: str) -> None:
        self._noun_phrase(doc, topic, sentiment, "subject")
        verb, topic_label = self._content_word(topic, "verb", GENERIC_VERBS)
        doc.emit(verb, "role:verb", topic_label)
        self._noun_phrase(doc, topic, sentiment, "object")
        if self.rng.random() < self.cfg.p_prepositional:
            doc.emit(self._pick(PREPOSITIONS), "role:preposition")
            self._noun_phrase(doc, topic, sentiment, "object")
        doc.emit(".", "role:punctuation")

    def _topic_and_sentiment(self, topic: str | None) -> tuple[str, str]:
        return topic or self._pick(list(TOPICS)), self._pick(list(SENTIMENTS))

    def story(self, topic: str | None = None) -> Document:
        topic, sentiment = self._topic_and_sentiment(topic)
        doc = Document("story", topic, sentiment)
        lo, hi = self.cfg.sentences
        for _ in range(int(self.rng.integers(lo, hi + 1))):
            self._sentence(doc, topic, sentiment)
        return doc

    def instruction(self, topic: str | None = None, with_answer: bool = True) -> Document:
        """``question : tell me about <topic> . answer :`` followed, when asked, by an on-topic answer."""
        topic, sentiment = self._topic_and_sentiment(topic)
        doc = Document("instruction", topic, sentiment)
        for word in instruction_prompt(topic).split():
            doc.emit(word, f"topic:{topic}" if word == topic else "", "role:punctuation" if word in ".:" else "")
        if with_answer:
            for _ in range(2):
                self._sentence(doc, topic, sentiment)
        return doc

    def ioi(self) -> Document:
        """``when A and B went to the P , B gave a O to A .``: the last name is the indirect object.

        ``(A, B)`` is a training pair: held-out pairs (``HELD_OUT_IOI_PAIRS``) are never generated."""
        a, b = _IOI_TRAIN_PAIRS[int(self.rng.integers(len(_IOI_TRAIN_PAIRS)))]
        doc = Document("ioi", None, None)
        words = ["when", a, "and", b, "went", "to", "the", self._pick(IOI_PLACES), ",", b, "gave", "a",
                 self._pick(IOI_OBJECTS), "to", a, "."]
        for word in words:
            doc.emit(word, "role:name" if word in NAMES else "", "role:punctuation" if word in ".," else "")
        return doc

    def document(self) -> Document:
        kind = DOC_KINDS[int(self.rng.choice(len(DOC_KINDS), p=np.asarray(self.cfg.kind_weights)))]
        return {"story": self.story, "instruction": self.instruction, "ioi": self.ioi}[kind]()

    def documents(self, n: int) -> list[Document]:
        return [self.document() for _ in range(n)]


def instruction_prompt(topic: str) -> str:
    """The steering-style prompt whose correct continuation is on ``topic``."""
    return f"question : tell me about {topic} . answer :"


def ioi_prompt_pair(a: str, b: str, place: str = "market", obj: str = "gift") -> tuple[str, str, str]:
    """A clean IOI prompt, its counterfactual (names swapped) and the clean answer (the indirect object)."""
    clean = f"when {a} and {b} went to the {place} , {b} gave a {obj} to"
    counterfactual = f"when {b} and {a} went to the {place} , {a} gave a {obj} to"
    return clean, counterfactual, a


def ioi_counterfactual_pairs(held_out: bool = True) -> list[tuple[str, str, str, str]]:
    """(clean prompt, counterfactual prompt, clean answer, counterfactual answer) over every held-out (or
    training) ordered name pair, place and object: the prompt pairs that patching draws from."""
    return [(*ioi_prompt_pair(a, b, place, obj), b) for a, b in ioi_pairs(held_out) for place in IOI_PLACES
            for obj in IOI_OBJECTS]
