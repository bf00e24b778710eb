"""A small generative grammar whose every token carries known concepts.

Three document kinds share one lexicon:

- ``story``: a few sentences on one topic with one sentiment,
  e.g. ``the lovely puppy chased a bone near the barn . the kitten was not cheerful .``
- ``instruction``: ``question : tell me about <topic> . answer : <sentences on that topic>``,
  the shape of the steering prompts used later.
- ``ioi``: ``when alice and bob went to the market , bob gave a gift to alice .``, where the
  indirect object (the name not repeated) is predictable: the [C23] patching task. The indirect object comes
  first or second at random (the IOI literature's ABBA and BABA orders: ``when bob and alice went ..., bob gave
  a gift to alice``), so no positional rule answers it. A fixed set of name pairs (``HELD_OUT_IOI_PAIRS``)
  never occurs in any generated document; IOI is evaluated on them, so solving it means using the rule rather
  than recalling the pairs seen in training.

Some concepts are not a matter of which token is there, as in real text:

- **Blends.** Part of the stories and instruction answers carry a second topic beside their own, in what a
  sentence does and where (its topical adjectives, its verb and its prepositional phrase: ``the leafy artist
  hiked a canvas near the mossy tree .``), as real text brings a concept into an answer about something else;
  the nouns of subject and object stay on the document's topic. So an answer can stay on its instruction while
  expressing another concept.
- **Things mentioned again.** A subject is now and then a noun the document already named (``the puppy chased
  a kitten . the puppy was happy .``), as entities recur in real text: a model gains from looking back at what
  was said, the skill the IOI task rests on.
- **Words shared by two topics** (``SHARED_WORDS``: ``bank`` is money or ocean, ``mouse`` animals or computers):
  such a word is labelled with the topic that produced it, which only its context tells.
- **Negation.** A copular sentence ``the kitten was not cheerful .`` carries the sentiment opposite to its
  adjective's: the adjective is labelled with the sentiment the sentence expresses, so ``cheerful`` is positive
  or negative by what precedes it.

Concepts are ``topic:<name>`` (16), ``sentiment:<name>`` (2) and ``role:<name>`` (8), 26 in all; each label
is what the generator put there, so the ground truth stays exact. Generation is a pure function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

TOPICS: dict[str, dict[str, list[str]]] = {
    "animals": {
        "noun": ["puppy", "kitten", "horse", "rabbit", "tiger", "parrot", "donkey", "goose", "lizard", "squirrel"],
        "verb": ["chased", "fed", "petted", "groomed", "tamed"],
        "adj": ["furry", "wild", "tame", "hairy"],
    },
    "food": {
        "noun": ["bread", "cheese", "apple", "soup", "pasta", "cake", "butter", "cherry", "salad", "pepper"],
        "verb": ["ate", "baked", "tasted", "sliced", "peeled"],
        "adj": ["tasty", "fresh", "spicy", "sweet"],
    },
    "sports": {
        "noun": ["ball", "goal", "racket", "team", "coach", "stadium", "referee", "trophy", "helmet", "medal"],
        "verb": ["kicked", "threw", "scored", "won", "tackled"],
        "adj": ["athletic", "fast", "competitive", "sporty"],
    },
    "music": {
        "noun": ["guitar", "song", "piano", "drum", "melody", "choir", "violin", "concert", "singer", "rhythm"],
        "verb": ["played", "sang", "tuned", "composed", "hummed"],
        "adj": ["loud", "melodic", "rhythmic", "musical"],
    },
    "weather": {
        "noun": ["rain", "storm", "cloud", "snow", "wind", "thunder", "fog", "hail", "breeze", "rainbow"],
        "verb": ["soaked", "froze", "blew", "flooded", "drizzled"],
        "adj": ["rainy", "cold", "windy", "foggy"],
    },
    "space": {
        "noun": ["rocket", "planet", "moon", "comet", "astronaut", "galaxy", "orbit", "satellite", "meteor",
                 "telescope"],
        "verb": ["launched", "orbited", "explored", "landed", "beamed"],
        "adj": ["cosmic", "lunar", "stellar", "orbital"],
    },
    "ocean": {
        "noun": ["boat", "shark", "reef", "sailor", "whale", "anchor", "dolphin", "harbor", "island", "tide"],
        "verb": ["sailed", "swam", "dived", "fished", "surfed"],
        "adj": ["salty", "deep", "coastal", "marine"],
    },
    "computers": {
        "noun": ["laptop", "keyboard", "server", "program", "screen", "robot", "printer", "software", "password",
                 "website"],
        "verb": ["coded", "debugged", "installed", "rebooted", "downloaded"],
        "adj": ["digital", "virtual", "wireless", "online"],
    },
    "medicine": {
        "noun": ["doctor", "nurse", "patient", "pill", "hospital", "vaccine", "bandage", "surgeon", "fever",
                 "clinic"],
        "verb": ["healed", "treated", "examined", "injected", "cured"],
        "adj": ["sick", "medical", "sterile", "healthy"],
    },
    "farming": {
        "noun": ["tractor", "barn", "farmer", "wheat", "cow", "field", "hay", "pig", "orchard", "seed"],
        "verb": ["planted", "harvested", "plowed", "milked", "watered"],
        "adj": ["rural", "muddy", "fertile", "organic"],
    },
    "travel": {
        "noun": ["train", "ticket", "suitcase", "airport", "hotel", "passport", "map", "tourist", "luggage",
                 "journey"],
        "verb": ["booked", "packed", "visited", "toured", "traveled"],
        "adj": ["foreign", "distant", "scenic", "exotic"],
    },
    "school": {
        "noun": ["teacher", "student", "lesson", "pencil", "exam", "library", "homework", "classroom", "notebook",
                 "principal"],
        "verb": ["studied", "taught", "graded", "read", "learned"],
        "adj": ["academic", "clever", "strict", "studious"],
    },
    "art": {
        "noun": ["painting", "canvas", "sculpture", "artist", "gallery", "portrait", "statue", "crayon", "museum",
                 "drawing"],
        "verb": ["painted", "sketched", "carved", "framed", "drew"],
        "adj": ["colorful", "abstract", "artistic", "creative"],
    },
    "money": {
        "noun": ["coin", "wallet", "loan", "banker", "salary", "cash", "budget", "profit", "debt", "tax"],
        "verb": ["saved", "spent", "invested", "borrowed", "earned"],
        "adj": ["rich", "costly", "cheap", "wealthy"],
    },
    "forest": {
        "noun": ["tree", "mushroom", "owl", "trail", "leaf", "ranger", "pine", "moss", "acorn", "log"],
        "verb": ["climbed", "hiked", "chopped", "gathered", "camped"],
        "adj": ["leafy", "shady", "mossy", "wooded"],
    },
    "cooking": {
        "noun": ["chef", "oven", "kitchen", "recipe", "pan", "spoon", "stove", "knife", "sauce", "grill"],
        "verb": ["stirred", "fried", "boiled", "grilled", "roasted"],
        "adj": ["hot", "crispy", "greasy", "juicy"],
    },
}
# Nouns of two topics each: which one a use of the word expresses, only its context says.
SHARED_WORDS: dict[str, tuple[str, str]] = {
    "bank": ("money", "ocean"), "mouse": ("animals", "computers"), "bat": ("animals", "sports"),
    "pitch": ("sports", "music"), "star": ("space", "music"), "net": ("sports", "ocean"),
    "bark": ("forest", "animals"), "key": ("music", "computers"), "virus": ("medicine", "computers"),
    "plant": ("farming", "forest"), "chip": ("cooking", "computers"), "note": ("music", "money"),
    "trunk": ("forest", "travel"), "pupil": ("school", "medicine"), "crane": ("animals", "farming"),
    "wave": ("ocean", "weather"), "brush": ("art", "forest"), "dish": ("food", "space"),
    "course": ("food", "school"), "fan": ("sports", "weather"),
}
for _word, _topics in SHARED_WORDS.items():
    for _topic in _topics:
        TOPICS[_topic]["noun"].append(_word)
SENTIMENTS: dict[str, list[str]] = {
    "positive": ["lovely", "happy", "wonderful", "kind", "great", "cheerful"],
    "negative": ["awful", "sad", "terrible", "cruel", "gloomy", "nasty"],
}
GENERIC_NOUNS = ["man", "woman", "child", "friend", "thing", "family"]
GENERIC_VERBS = ["saw", "liked", "found", "wanted"]
DETERMINERS = ["the", "a", "every", "that"]
PREPOSITIONS = ["near", "with", "behind", "under"]
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "kate", "liam", "mona",
         "nick", "olga", "paul", "quinn", "rosa", "sam", "tina"]
IOI_PLACES = ["market", "park", "station", "party"]
IOI_OBJECTS = ["gift", "book", "drink", "letter"]
PROMPT_WORDS = ["question", "tell", "me", "about", "answer", "when", "and", "went", "to", "gave", ",", ":", "."]
COPULA, NEGATION = "was", "not"
# The world's version, recorded beside every check against its truth: a new one whenever how its documents or their
# labels are generated changes for the same settings (as the toy judge's model name is for its answers);
# ``world_version`` adds a hash of the vocabulary and the generator's defaults, which change it by themselves.
WORLD_VERSION = "toyworld-grammar-1"
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]
ROLES = ["subject", "verb", "object", "adjective", "determiner", "preposition", "punctuation", "name"]
DOC_KINDS = ("story", "instruction", "ioi")
IOI_ORDERS = ("ABBA", "BABA")  # the indirect object (A) first or second among the two names
IOI_HOLDOUT_SEED = 1729
N_HELD_OUT_IOI_PAIRS = 19  # of the 190 unordered pairs of 20 names: 10 %, both orders of each held out
# Each name keeps at least 17 of its 19 partners in training. (With 4 held out per name, a model learned which
# partners a name never has in training and, on some held-out pairs, answered against the rule.)
IOI_HOLDOUT_MAX_PER_NAME = 2


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
    words += IOI_PLACES + IOI_OBJECTS + PROMPT_WORDS + [COPULA, NEGATION]
    return list(dict.fromkeys(words))


def word_topics() -> dict[str, str]:
    """Topic of each topical content word of one topic (topic names themselves included; ``SHARED_WORDS`` left
    out, as their topic is their context's)."""
    out = {t: t for t in TOPICS}
    for topic, vocab in TOPICS.items():
        for pos in ("noun", "verb", "adj"):
            out.update({w: topic for w in vocab[pos] if w not in SHARED_WORDS})
    return out


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the generator; the defaults give a world a 4-layer model learns in minutes."""

    p_on_topic: float = 0.85  # a content slot takes a topical word (else a generic one: man, saw)
    p_adjective: float = 0.5
    p_sentiment_adjective: float = 0.5
    p_prepositional: float = 0.6  # a story sentence has a prepositional phrase (its setting)
    p_copular: float = 0.2  # a sentence is ``the kitten was (not) cheerful .``
    p_negated: float = 0.5  # a copular sentence negates an adjective of the other sentiment
    p_blend: float = 0.5  # a story or an answer carries a second topic (adjectives, verbs, prepositional phrases)
    p_mention_again: float = 0.3  # a subject is a noun the document named before
    sentences: tuple[int, int] = (3, 5)
    ioi_sentences: tuple[int, int] = (2, 4)  # IOI sentences per IOI document, each with its own two names
    kind_weights: tuple[float, float, float] = (0.45, 0.25, 0.3)  # story, instruction, ioi


@dataclass
class Document:
    """One generated document: words and, per word, the concepts it expresses."""

    kind: str
    topic: str | None
    sentiment: str | None
    second_topic: str | None = None  # a blended document's second topic
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

    def _noun_phrase(self, doc: Document, role: str, topic: str) -> None:
        """Determiner, an adjective now and then (of the document's sentiment, or of its modifiers' topic), and a
        noun of ``topic`` (a subject: now and then one named before, with the label it had)."""
        doc.emit(self._pick(DETERMINERS), "role:determiner")
        if self.rng.random() < self.cfg.p_adjective:
            if self.rng.random() < self.cfg.p_sentiment_adjective:
                doc.emit(self._pick(SENTIMENTS[doc.sentiment]), "role:adjective", f"sentiment:{doc.sentiment}")
            else:
                modifier = doc.second_topic or topic
                doc.emit(self._pick(TOPICS[modifier]["adj"]), "role:adjective", f"topic:{modifier}")
        named = [(w, labels) for w, labels in zip(doc.words, doc.labels, strict=True)
                 if any(lab in ("role:subject", "role:object") for lab in labels)]
        if role == "subject" and named and self.rng.random() < self.cfg.p_mention_again:
            noun, labels = named[int(self.rng.integers(len(named)))]
            topic_label = next((lab for lab in labels if lab.startswith("topic:")), "")
        else:
            noun, topic_label = self._content_word(topic, "noun", GENERIC_NOUNS)
        doc.emit(noun, f"role:{role}", topic_label)

    def _sentence(self, doc: Document) -> None:
        if self.rng.random() < self.cfg.p_copular:
            return self._copular(doc)
        self._noun_phrase(doc, "subject", doc.topic)
        verb, topic_label = self._content_word(doc.second_topic or doc.topic, "verb", GENERIC_VERBS)
        doc.emit(verb, "role:verb", topic_label)
        self._noun_phrase(doc, "object", doc.topic)
        if self.rng.random() < self.cfg.p_prepositional:  # the setting: a blend's second topic
            doc.emit(self._pick(PREPOSITIONS), "role:preposition")
            self._noun_phrase(doc, "object", doc.second_topic or doc.topic)
        doc.emit(".", "role:punctuation")

    def _copular(self, doc: Document) -> None:
        """``the kitten was cheerful .`` or ``the kitten was not gloomy .``: either way the adjective carries the
        document's sentiment; negated, it is a word of the other sentiment."""
        self._noun_phrase(doc, "subject", doc.topic)
        doc.emit(COPULA, "role:verb")
        words = SENTIMENTS[doc.sentiment]
        if self.rng.random() < self.cfg.p_negated:
            doc.emit(NEGATION)
            words = SENTIMENTS[next(s for s in SENTIMENTS if s != doc.sentiment)]
        doc.emit(self._pick(words), "role:adjective", f"sentiment:{doc.sentiment}")
        doc.emit(".", "role:punctuation")

    def _start(self, kind: str, topic: str | None) -> Document:
        """A document of ``kind`` on ``topic`` (else a random one), a random sentiment, and with ``p_blend`` a
        second topic."""
        topic = topic or self._pick(list(TOPICS))
        doc = Document(kind, topic, self._pick(list(SENTIMENTS)))
        if self.rng.random() < self.cfg.p_blend:
            doc.second_topic = self._pick([t for t in TOPICS if t != topic])
        return doc

    def story(self, topic: str | None = None) -> Document:
        doc = self._start("story", topic)
        lo, hi = self.cfg.sentences
        for _ in range(int(self.rng.integers(lo, hi + 1))):
            self._sentence(doc)
        return doc

    def instruction(self, topic: str | None = None, with_answer: bool = True) -> Document:
        """``question : tell me about <topic> . answer :`` followed, when asked, by an answer on the topic (which
        may blend a second topic in)."""
        doc = self._start("instruction", topic)
        for word in instruction_prompt(doc.topic).split():
            doc.emit(word, f"topic:{doc.topic}" if word == doc.topic else "",
                     "role:punctuation" if word in ".:" else "")
        if with_answer:
            for _ in range(2):
                self._sentence(doc)
        return doc

    def ioi(self) -> Document:
        """A few sentences ``when A and B went to the P , B gave a O to A .`` (ABBA) or ``when B and A went ...``
        (BABA), each with its own names: the last name is the indirect object, the name given once. (Several
        per document: the task's signal is its last token, and a document of one sentence would leave most of a
        training row padding.)

        ``(A, B)`` is a training pair: held-out pairs (``HELD_OUT_IOI_PAIRS``) are never generated."""
        doc = Document("ioi", None, None)
        lo, hi = self.cfg.ioi_sentences
        for _ in range(int(self.rng.integers(lo, hi + 1))):
            a, b = _IOI_TRAIN_PAIRS[int(self.rng.integers(len(_IOI_TRAIN_PAIRS)))]
            order = IOI_ORDERS[int(self.rng.integers(len(IOI_ORDERS)))]
            words = ioi_prompt(a, b, self._pick(IOI_PLACES), self._pick(IOI_OBJECTS), order).split() + [a, "."]
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


def ioi_prompt(io: str, s: str, place: str = "market", obj: str = "gift", order: str = "ABBA") -> str:
    """An IOI prompt whose answer is the indirect object ``io``: ``when io and s went to the place , s gave a obj
    to`` (ABBA), or with the two names of the first clause the other way round (BABA)."""
    if order not in IOI_ORDERS:
        raise ValueError(f"IOI order {order!r}: expected one of {IOI_ORDERS}")
    first, second = (io, s) if order == "ABBA" else (s, io)
    return f"when {first} and {second} went to the {place} , {s} gave a {obj} to"


def ioi_prompt_pair(a: str, b: str, place: str = "market", obj: str = "gift", order: str = "ABBA"
                    ) -> tuple[str, str, str]:
    """A clean IOI prompt, its counterfactual (the names swapped, the same order) and the clean answer (the
    indirect object)."""
    return ioi_prompt(a, b, place, obj, order), ioi_prompt(b, a, place, obj, order), a


def ioi_counterfactual_pairs(held_out: bool = True, orders: tuple[str, ...] = IOI_ORDERS
                             ) -> list[tuple[str, str, str, str]]:
    """(clean prompt, counterfactual prompt, clean answer, counterfactual answer) over every held-out (or
    training) ordered name pair, place, object and order: the prompt pairs that patching draws from."""
    return [(*ioi_prompt_pair(a, b, place, obj, order), b) for order in orders for a, b in ioi_pairs(held_out)
            for place in IOI_PLACES for obj in IOI_OBJECTS]


def world_version() -> str:
    """``WORLD_VERSION`` and a hash of what the world is made of: its words per topic and role, its concepts, and
    the generator's default probabilities."""
    import hashlib
    import json

    content = json.dumps([TOPICS, lexicon(), concepts(), repr(WorldConfig())], sort_keys=True, default=str)
    return f"{WORLD_VERSION}+{hashlib.sha256(content.encode()).hexdigest()[:8]}"
