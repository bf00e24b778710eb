"""The toy world's judge: a reader that knows the grammar's vocabulary the way an LLM knows English.

It sees only what an LLM judge would: the fragments' tokens, the marked tokens when explaining, and the
explanation text when detecting or simulating. It never sees per-token concept labels.

- explain: if most marked tokens belong to one word group (a topic, a sentiment, names, determiners,
  prepositions, punctuation), name the group and a few of its marked words; else quote the marked words that
  cover most of the marking.
- detect / simulate: a token is predicted active if the explanation quotes it, names its group, or mentions
  it as a content word.
- rate (steering): concept and instruction relevance by the words of the concept / the instruction's topic
  present in the text; fluency by the share of known words and repeated bigrams.
"""

import re
from collections import Counter

from sae_models.judges import prompts
from sae_models.judges.protocol import Completion, JudgeRequest
from sae_models.toyworld.grammar import DETERMINERS, NAMES, PREPOSITIONS, PROMPT_WORDS, SENTIMENTS, TOPICS, lexicon

GROUP_SHARE = 0.6  # share of the marked tokens a group must cover to be named
WORD_SHARE = 0.8  # otherwise, quote the most frequent marked words until they cover this share
MAX_WORDS = 6


def word_groups() -> dict[str, set[str]]:
    groups = {topic: {topic, *(w for pos in vocab.values() for w in pos)} for topic, vocab in TOPICS.items()}
    groups.update({name: set(words) for name, words in SENTIMENTS.items()})
    groups.update({"names": set(NAMES), "determiners": set(DETERMINERS), "prepositions": set(PREPOSITIONS),
                   "punctuation": {",", ".", ":"}})
    return groups


class ToyworldBackend:
    name = "toyworld"
    model = "toyworld-reader-v1"
    max_concurrency = 1

    def __init__(self):
        self.groups = word_groups()
        self.vocabulary = set(lexicon())
        # Words an explanation uses as grammar rather than as cues.
        self.function_words = set(DETERMINERS) | set(PREPOSITIONS) | set(PROMPT_WORDS)

    def complete(self, request: JudgeRequest) -> Completion:
        p = request.payload
        if request.task == "explain":
            text = "Explanation: " + self.explain(p["windows"], p["marked"])
        elif request.task == "detect":
            cues = self.cues(p["explanation"])
            picked = [str(i) for i, w in enumerate(p["windows"], 1) if any(t.strip() in cues for t in w)]
            text = ", ".join(picked) or "None"
        elif request.task == "simulate":
            cues = self.cues(p["explanation"])
            text = "\n".join(f"{i}: " + " ".join(str(prompts.SIM_MAX if t.strip() in cues else 0) for t in w)
                             for i, w in enumerate(p["windows"], 1))
        else:
            text = f"Rating: [[{self.rate(p['kind'], p['concept'], p['instruction'], p['text'])}]]"
        return Completion(text, sum(len(m["content"].split()) for m in request.messages), len(text.split()))

    def explain(self, windows: list[list[str]], marked: list[list[bool]]) -> str:
        words = Counter(t.strip() for w, m in zip(windows, marked, strict=True)
                        for t, on in zip(w, m, strict=True) if on and t.strip())
        total = sum(words.values())
        if not total:
            return "nothing in particular"
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
