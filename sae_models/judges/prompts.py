"""Judge prompts and answer parsers, one pair per task.

Modelled on SAEBench's autointerp prompts (explain from marked top windows, detect by listing window
numbers), the [C23] simulator (per-token activations 0..10) and AxBench's three 0-2 ratings. A parser
returns None when the answer does not follow the requested format; callers count it and score it 0.
"""

import re
from collections.abc import Sequence

from sae_models.judges.protocol import JudgeRequest, Window

MARK_OPEN, MARK_CLOSE = "<<", ">>"
SIM_MAX = 10

_INTRO = ("We are studying latents of a sparse autoencoder trained on a language model. Each latent "
          "responds to some particular token, word, phrase or concept in short text fragments.")

EXPLAIN_SYSTEM = (
    f"{_INTRO} You will see fragments where the latent activates, most strongly activating first; the tokens "
    f"where it activates are marked {MARK_OPEN}like this{MARK_CLOSE}. Say in one short phrase what the latent "
    "responds to. Cover most of the marked tokens, but do not just list them; be general where the fragments "
    "allow it. At most 20 words, no punctuation or formatting. Answer in the form 'Explanation: <phrase>'."
)
DETECT_SYSTEM = (
    f"{_INTRO} You will get an explanation of one latent and numbered fragments in random order. List the "
    "numbers of the fragments in which you expect the latent to activate at least once, comma-separated, "
    "e.g. '2, 5, 7'. If you expect none, answer 'None'. Answer with the numbers or 'None' and nothing else."
)
SIMULATE_SYSTEM = (
    f"{_INTRO} You will get an explanation of one latent and numbered fragments, each given as a list of "
    f"tokens separated by ' | '. Predict the latent's activation on every token as an integer from 0 (none) "
    f"to {SIM_MAX} (strongest). Answer with one line per fragment, 'k: a1 a2 ...', exactly one integer per "
    "token, and nothing else."
)
_RATE_FORMAT = ("First give a short reason (one or two sentences), then end with the rating on its own line in "
                "exactly this form: 'Rating: [[n]]'.")
RATE_SYSTEM = {
    "concept": ("Please act as an impartial judge of whether a concept is present in a text fragment. Focus only "
                "on the concept, not on grammar or coherence. Rate 0 if the concept is absent, 1 if it is "
                f"present only in passing or awkwardly, 2 if it is clearly and fully expressed. {_RATE_FORMAT}"),
    "instruct": ("Please act as an impartial judge of whether a text fragment answers an instruction. Focus only "
                 "on relevance to the instruction, not on style or fluency. Rate 0 if it is unrelated, 1 if it is "
                 f"partly relevant, 2 if it addresses the instruction fully. {_RATE_FORMAT}"),
    "fluency": ("Please act as an impartial judge of the fluency of a text fragment. Focus only on whether it reads "
                "as natural, grammatical language, not on its content. Rate 0 if it is broken or repetitive, 1 if "
                f"it is understandable with errors, 2 if it is fluent. {_RATE_FORMAT}"),
}
RATINGS = tuple(RATE_SYSTEM)


def render(window: Window, threshold: float | None = None) -> str:
    """The window's text; with a threshold, runs of tokens whose activation exceeds it are marked."""
    if threshold is None:
        return "".join(window.tokens).strip()
    out, open_run = [], False
    for token, act in zip(window.tokens, window.acts, strict=True):
        marked = act > threshold
        if marked and not open_run:
            lead = token[: len(token) - len(token.lstrip())]
            out.append(lead + MARK_OPEN + token.lstrip())
        elif not marked and open_run:
            out[-1] += MARK_CLOSE
            out.append(token)
        else:
            out.append(token)
        open_run = marked
    if open_run:
        out[-1] += MARK_CLOSE
    return "".join(out).strip()


def _numbered(texts: Sequence[str]) -> str:
    return "\n".join(f"{i}. {t}" for i, t in enumerate(texts, start=1))


def _chat(system: str, user: str) -> tuple[dict, ...]:
    return ({"role": "system", "content": system}, {"role": "user", "content": user})


def explain_request(windows: Sequence[Window], threshold: float, max_tokens: int = 40) -> JudgeRequest:
    user = f"Fragments:\n\n{_numbered([render(w, threshold) for w in windows])}"
    payload = {"windows": [list(w.tokens) for w in windows],
               "marked": [[a > threshold for a in w.acts] for w in windows]}
    return JudgeRequest("explain", _chat(EXPLAIN_SYSTEM, user), payload, max_tokens)


def parse_explanation(text: str, max_words: int = 30) -> str | None:
    """The phrase after 'Explanation:' (or the whole answer), cut to ``max_words``; None when empty."""
    match = re.search(r"explanation\s*:\s*(.*)", text, flags=re.IGNORECASE | re.DOTALL)
    phrase = " ".join((match.group(1) if match else text).split()[:max_words]).strip().strip('"')
    if phrase.endswith(".") and not phrase.endswith("'.'"):
        phrase = phrase[:-1]
    return phrase or None


def detect_request(explanation: str, windows: Sequence[Window], max_tokens: int = 40) -> JudgeRequest:
    user = (f"Explanation: the latent responds to {explanation}\n\n"
            f"Fragments:\n\n{_numbered([render(w) for w in windows])}")
    payload = {"explanation": explanation, "windows": [list(w.tokens) for w in windows]}
    return JudgeRequest("detect", _chat(DETECT_SYSTEM, user), payload, max_tokens)


def parse_detection(text: str, n_windows: int) -> list[bool] | None:
    """Which of the ``n_windows`` fragments the judge picked; None unless the answer is 'None' or a list of
    numbers in range."""
    answer = text.strip().strip(".").strip()
    if answer.lower() == "none":
        return [False] * n_windows
    if not re.fullmatch(r"\d+(\s*,\s*\d+)*", answer):
        return None
    picked = {int(x) for x in answer.split(",")}
    if not all(1 <= i <= n_windows for i in picked):
        return None
    return [i in picked for i in range(1, n_windows + 1)]


def simulate_request(explanation: str, windows: Sequence[Window], max_tokens: int | None = None) -> JudgeRequest:
    fragments = [" | ".join(t.strip() or t for t in w.tokens) for w in windows]
    user = f"Explanation: the latent responds to {explanation}\n\nFragments:\n\n{_numbered(fragments)}"
    payload = {"explanation": explanation, "windows": [list(w.tokens) for w in windows]}
    budget = max_tokens or 8 + 3 * sum(len(w.tokens) + 2 for w in windows)
    return JudgeRequest("simulate", _chat(SIMULATE_SYSTEM, user), payload, budget)


def parse_simulation(text: str, lengths: Sequence[int]) -> list[list[float]] | None:
    """Per fragment, the predicted activations scaled to [0, 1]; None unless every fragment has a line with
    exactly one integer in 0..SIM_MAX per token."""
    lines = {}
    for line in text.strip().splitlines():
        match = re.fullmatch(r"\s*(\d+)\s*[:.]\s*([\d\s]*)", line)
        if match:
            lines[int(match.group(1))] = [int(v) for v in match.group(2).split()]
    out = []
    for k, n in enumerate(lengths, start=1):
        values = lines.get(k)
        if values is None or len(values) != n or any(v > SIM_MAX for v in values):
            return None
        out.append([v / SIM_MAX for v in values])
    return out


def _block(name: str, body: str) -> str:
    return f"[{name} Start]\n{body}\n[{name} End]"


def rate_request(kind: str, concept: str, instruction: str, text: str, max_tokens: int = 256) -> JudgeRequest:
    """AxBench's shape: the judge instruction, the concept or instruction and the text in delimited blocks, a
    short reason, then 'Rating: [[n]]'."""
    if kind not in RATE_SYSTEM:
        raise ValueError(f"rating kind {kind!r}: expected one of {RATINGS}")
    given = {"concept": [_block("Concept", concept)], "instruct": [_block("Instruction", instruction)],
             "fluency": []}[kind]
    user = "\n\n".join([*given, _block("Text Fragment", text)])
    payload = {"kind": kind, "concept": concept, "instruction": instruction, "text": text}
    return JudgeRequest("rate", _chat(RATE_SYSTEM[kind], user), payload, max_tokens)


def parse_rating(text: str) -> int | None:
    """The 0..2 rating in 'Rating: [[n]]' (or a bare 'Rating: n'); None if absent or out of range."""
    match = re.search(r"\[\[\s*(\d+)\s*\]\]", text) or re.search(r"rating\s*:\s*(\d+)", text, re.IGNORECASE)
    if not match or int(match.group(1)) > 2:
        return None
    return int(match.group(1))
