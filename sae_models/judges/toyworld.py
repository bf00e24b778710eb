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
- rate (steering): concept and instruction relevance by the words of the concept / the instruction's topic
  present in the text; fluency by the share of known words and repeated bigrams.
"""

import re
from collections import Counter

from sae_models.judges import prompts
from sae_models.judges.protocol import Completion, JudgeRequest
from sae_models.toyworld.grammar import (
    DETERMINERS,
    GENERIC_NOUNS,
    GENERIC_VERBS,
    IOI_OBJECTS,
    IOI_PLACES,
    NAMES,
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
FUNCTION_TOKENS = frozenset(DETERMINERS) | frozenset(PREPOSITIONS) | frozenset(PROMPT_WORDS)
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
    model = "toyworld-reader-v2"  # a new version whenever its answers change: the call cache is keyed by it
    max_concurrency = 1

    def __init__(self):
        self.groups = word_groups()
        self.classes = word_classes()
        self.vocabulary = set(lexicon())
        # Words an explanation uses as grammar rather than as cues.
        self.function_words = set(DETERMINERS) | set(PREPOSITIONS) | set(PROMPT_WORDS)

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
        tokens = text.lower().split()
        if kind == "fluency":
            known = sum(t in self.vocabulary for t in tokens) / max(len(tokens), 1)
            bigrams = list(zip(tokens, tokens[1:], strict=False))
            repeated = 1 - len(set(bigrams)) / max(len(bigrams), 1)
            return 2 if known >= 0.9 and repeated < 0.2 else int(known >= 0.6 and repeated < 0.5)
        if kind == "concept":
            cues = self.cues(concept)
        else:
            topics = [w for w in re.findall(r"[a-z]+", instruction.lower()) if w in TOPICS]
            if not topics:
                return 1
            cues = self.groups[topics[0]]
        return min(2, sum(t in cues for t in tokens))


def _words(tokens: list[str]) -> list[str]:
    return [t.strip() for t in tokens]
