"""The toy world's judge: a reader that knows the grammar's vocabulary the way an LLM knows English.

It sees only what an LLM judge would: the fragments' tokens, the marked tokens when explaining, and the
explanation text when detecting or simulating. It never sees per-token concept labels.

- explain: if most marked tokens belong to one word group (a topic, a sentiment, names, determiners,
  prepositions, punctuation), name the group and a few of its marked words; else quote the marked words that
  cover most of the marking. When the marked tokens are mostly function tokens (determiners, prepositions,
  punctuation, the prompt words), which turn up in nearly every fragment of this language, it also says
  where they are marked, as an LLM judge would ("'.' in text about cooking", "'the' after verbs"), if one
  context covers most of the marked tokens.
- detect / simulate: a token is predicted active if the explanation quotes it, names its group, or mentions
  it as a content word, and it sits in the stated context.
- rate (steering): concept relevance by the share of the text's words that the explanation points at, read
  as in detection (cue words, where the stated context holds: "determiners in text about school" needs
  school words around); instruction relevance by the share of words of the instruction's topic; fluency
  by the share of words in sentences the toy grammar accepts (thresholds below: ``ON_CONCEPT``, ``FLUENT``).
"""

import re
from collections import Counter

import numpy as np

from sae_models.judges import prompts
from sae_models.judges.protocol import Completion, JudgeRequest
from sae_models.toyworld.grammar import (
    COPULA,
    DETERMINERS,
    GENERIC_NOUNS,
    GENERIC_VERBS,
    IOI_OBJECTS,
    IOI_PLACES,
    NAMES,
    NEGATION,
    PREPOSITIONS,
    PROMPT_WORDS,
    SENTIMENTS,
    TOPICS,
    lexicon,
)

GROUP_SHARE = 0.6  # share of the marked tokens a group must cover to be named
WORD_SHARE = 0.8  # otherwise, quote the most frequent marked words until they cover this share
CONTEXT_SHARE = 0.8  # share of the marked function tokens a context must cover to be stated
MAX_WORDS = 6
FUNCTION_TOKENS = frozenset(DETERMINERS) | frozenset(PREPOSITIONS) | frozenset(PROMPT_WORDS) | {COPULA, NEGATION}
# Steering ratings (shares of the generated words): concept and instruction relevance rate 2 from 20% of the
# words (an on-topic toy sentence has about 30%), 1 from 5% (one word in twenty); fluency rates 2 when at
# least 90% of the words of complete sentences are in grammatical sentences, 1 from 50%.
ON_CONCEPT = (0.2, 0.05)
FLUENT = (0.9, 0.5)
# A story sentence (det, adjective?, noun, verb, det, adjective?, noun, [preposition det adjective? noun] .), a
# copular one (det, adjective?, noun, was, [not], adjective .) or an IOI sentence, over word tags (D determiner,
# A adjective, N noun, V verb, P preposition, M name).
SENTENCE = re.compile(r"D (A )?N V D (A )?N( P D (A )?N)? \.|D (A )?N was (not )?A \.|"
                      r"when M and M went to D N , M V D N to M \.")
CONTEXT = re.compile(r"\s+((?:in text about|after)\s+\S+|in (?:positive|negative) text)$")


def word_classes() -> dict[str, set[str]]:
    """Parts of speech a reader knows, for "after verbs"-style contexts."""
    topical = {pos: {w for vocab in TOPICS.values() for w in vocab[pos]} for pos in ("noun", "verb", "adj")}
    return {"verbs": topical["verb"] | set(GENERIC_VERBS) | {"gave", "went"},
            "nouns": topical["noun"] | set(GENERIC_NOUNS) | set(IOI_PLACES) | set(IOI_OBJECTS),
            "adjectives": topical["adj"] | {w for words in SENTIMENTS.values() for w in words},
            "names": set(NAMES), "determiners": set(DETERMINERS), "prepositions": set(PREPOSITIONS)}


def word_groups() -> dict[str, set[str]]:
    groups = {topic: {topic, *(w for pos in vocab.values() for w in pos)} for topic, vocab in TOPICS.items()}
    groups.update({name: set(words) for name, words in SENTIMENTS.items()})
    groups.update({"names": set(NAMES), "determiners": set(DETERMINERS), "prepositions": set(PREPOSITIONS),
                   "punctuation": {",", ".", ":"}})
    return groups


class ToyworldBackend:
    name = "toyworld"
    model = "toyworld-reader-v4"  # a new version whenever its answers change: the call cache is keyed by it
    max_concurrency = 1

    def __init__(self):
        self.groups = word_groups()
        self.classes = word_classes()
        self.vocabulary = set(lexicon())
        # Words an explanation uses as grammar rather than as cues.
        self.function_words = set(FUNCTION_TOKENS)
        classes = self.classes
        self.tags = {"D": classes["determiners"], "A": classes["adjectives"], "N": classes["nouns"],
                     "V": classes["verbs"] - {"went"}, "P": classes["prepositions"], "M": classes["names"]}

    def complete(self, request: JudgeRequest) -> Completion:
        p = request.payload
        if request.task == "explain":
            text = "Explanation: " + self.explain(p["windows"], p["marked"])
        elif request.task == "detect":
            predict = self.predictor(p["explanation"])
            picked = [str(i) for i, w in enumerate(p["windows"], 1) if any(predict(_words(w)))]
            text = ", ".join(picked) or "None"
        elif request.task == "simulate":
            predict = self.predictor(p["explanation"])
            text = "\n".join(f"{i}: " + " ".join(str(prompts.SIM_MAX if on else 0) for on in predict(_words(w)))
                             for i, w in enumerate(p["windows"], 1))
        else:
            text = f"Rating: [[{self.rate(p['kind'], p['concept'], p['instruction'], p['text'])}]]"
        return Completion(text, sum(len(m["content"].split()) for m in request.messages), len(text.split()))

    def explain(self, windows: list[list[str]], marked: list[list[bool]]) -> str:
        texts = [_words(w) for w in windows]
        spots = [(w, j) for w, m in zip(texts, marked, strict=True) for j, on in enumerate(m) if on and w[j]]
        if not spots:
            return "nothing in particular"
        function = [(w, j) for w, j in spots if w[j] in FUNCTION_TOKENS]
        if len(function) < GROUP_SHARE * len(spots):  # mostly content words: name those
            return self.describe([(w, j) for w, j in spots if w[j] not in FUNCTION_TOKENS])
        where = self.context_of(function)
        return f"{self.describe(function)} {where}" if where else self.describe(function)

    def describe(self, spots: list[tuple[list[str], int]]) -> str:
        """The word group most of the marked words belong to, with examples; else the words themselves."""
        words = Counter(w[j] for w, j in spots)
        total = sum(words.values())
        group, share = max(((g, sum(words[w] for w in ws) / total) for g, ws in self.groups.items()),
                           key=lambda x: x[1])
        examples = [w for w, _ in words.most_common() if w in self.groups[group]][:3]
        if share >= GROUP_SHARE and len(examples) > 1:
            return f"concept {group} such as " + " ".join(f"'{w}'" for w in examples)
        quoted, covered = [], 0
        for word, n in words.most_common(MAX_WORDS):
            quoted.append(f"'{word}'")
            covered += n
            if covered >= WORD_SHARE * total:
                break
        return "tokens " + " ".join(quoted)

    def context_of(self, spots: list[tuple[list[str], int]]) -> str | None:
        """The context covering the most marked tokens (at least CONTEXT_SHARE of them): a topic or sentiment
        present in the fragment, or the class or token right before; None when none does."""
        candidates = [*(f"in text about {t}" for t in TOPICS), *(f"in {s} text" for s in SENTIMENTS),
                      *(f"after {c}" for c in self.classes),
                      *{f"after '{w[j - 1]}'" for w, j in spots if j > 0 and w[j - 1]}]
        coverage = {c: sum(self._holds(c, w, j) for w, j in spots) / len(spots) for c in candidates}
        best = max(candidates, key=lambda c: coverage[c])  # the first of equals: topics before classes
        return best if coverage[best] >= CONTEXT_SHARE else None

    def _holds(self, context: str, words: list[str], j: int) -> bool:
        """Whether the token ``words[j]`` sits in ``context`` ("after verbs", "after '.'", "in text about
        food", "in positive text")."""
        if context.startswith("after "):
            before, name = (words[j - 1] if j > 0 else ""), context.removeprefix("after ")
            return before == name.strip("'") if name.startswith("'") else before in self.classes.get(name, ())
        group = context.removeprefix("in text about ").removeprefix("in ").removesuffix(" text")
        return any(w in self.groups.get(group, ()) for w in words)

    def predictor(self, explanation: str):
        """Per-token predictions [bool] for a fragment's words: a cue token, in the stated context if any."""
        match = CONTEXT.search(explanation)
        cues = self.cues(explanation[:match.start()] if match else explanation)
        context = match.group(1) if match else None

        def predict(words: list[str]) -> list[bool]:
            return [w in cues and (context is None or self._holds(context, words, j)) for j, w in enumerate(words)]

        return predict

    def cues(self, explanation: str) -> set[str]:
        """Tokens an explanation points at: quoted tokens, members of named groups, content words."""
        cues = set(re.findall(r"'([^'\s]+)'", explanation))
        for word in re.findall(r"[a-z]+", re.sub(r"'[^'\s]+'", " ", explanation.lower())):
            if word in self.groups:
                cues |= self.groups[word]
            elif word in self.vocabulary and word not in self.function_words:
                cues.add(word)
        return cues

    def rate(self, kind: str, concept: str, instruction: str, text: str) -> int:
        """Steering ratings from the share of the text's words that carry the concept (its cue words) or the
        instruction's topic, and for fluency the share of words in sentences the grammar accepts."""
        words = [w for w in text.lower().split() if w]
        if kind == "fluency":
            return _graded(self.grammatical_share(words), FLUENT)
        if kind == "concept":  # read as in detection: the cue words, where the stated context holds
            return _graded(float(np.mean(self.predictor(concept)(words))) if words else 0.0, ON_CONCEPT)
        topics = [w for w in re.findall(r"[a-z]+", instruction.lower()) if w in TOPICS]
        if not topics:
            return 1  # no topic to check against
        cues = self.groups[topics[0]]
        return _graded(sum(w in cues for w in words) / max(len(words), 1), ON_CONCEPT)

    def grammatical_share(self, words: list[str]) -> float:
        """Share of the words of complete sentences (up to a '.') that form a sentence of the toy grammar; a
        trailing unfinished sentence (cut by the token budget) is not counted; 0 without a full sentence."""
        sentences, current = [], []
        for w in words:
            current.append(w)
            if w == ".":
                sentences.append(current)
                current = []
        total = sum(len(x) for x in sentences)
        good = sum(len(x) for x in sentences if SENTENCE.fullmatch(" ".join(self._tag(w) for w in x)))
        return good / total if total else 0.0

    def _tag(self, word: str) -> str:
        for tag, members in self.tags.items():
            if word in members:
                return tag
        return word if word in self.vocabulary else "?"


def _graded(share: float, cuts: tuple[float, float]) -> int:
    """2 at or above the first cut, 1 at or above the second, else 0."""
    return 2 if share >= cuts[0] else int(share >= cuts[1])


def _words(tokens: list[str]) -> list[str]:
    return [t.strip() for t in tokens]
