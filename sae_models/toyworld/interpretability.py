"""True interpretability on the toy world: how well could any exact one-feature explanation detect a latent?

For each scored latent, take the detection windows the judge scored (the same windows, the same truth: a window
activates when its max activation exceeds tau, random windows negative under SAEBench's rule) and ask, for every
feature of the world's fixed vocabulary, what a perfect simulator reading the explanation "fires on <feature>"
would answer: a window is picked when some token in it carries the feature. The latent's true interpretability
is the best balanced accuracy over the vocabulary. Nothing of the judge goes into it (no explanation, no word
groups, no answer): only the windows, the activations and the grammar's labels.

The vocabulary is fixed by the world before any SAE is trained: its concepts (``topic:food``, ``role:subject``,
``sentiment:positive``...), its words (``word:dog``), and a word in a context (``word:dog@topic:animals``: the word
where the grammar labels it with that concept). The best of several hundred candidates on 14 windows is an
optimistic ceiling, as any best-of-many is: read it as what a perfect explainer could reach, against which mu shows
what the explanation and the judge lose.

A latent is ``single_word`` when some single word reaches that best accuracy: there a judge that reads the
windows' words can score well without finding any concept, so an instrument's agreement with the truth on those
latents says little about concepts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from sae_models.arrow import schema_of
from sae_models.evals.autointerp import balanced_accuracy, concept_subset, plan_latent
from sae_models.evals.config import AutointerpConfig
from sae_models.evals.examples import PAD_TOKEN, LatentExamples

WORD = "word:"
CONTEXT = "@"  # word:<w>@<concept>: the word where the grammar labels it with the concept


@dataclass
class TrueInterpretabilityRow:
    """One row of ``true_interpretability``: a scored latent's best exact one-feature explanation."""

    latent: int = field(metadata={"arrow": pa.int32()})
    true_interpretability: float  # best balanced detection accuracy of one feature on the judge's windows
    true_feature: str  # the feature that reaches it (a concept before a word, a word before a word in context)
    single_word: bool  # some single word reaches it too
    concept100: bool  # in the CONCEPT100 subset whose mean is mu


TRUE_INTERPRETABILITY_SCHEMA = schema_of(TrueInterpretabilityRow)


def _complexity(feature: str) -> int:
    """0 a concept, 1 a word, 2 a word in a context: ties go to the simpler explanation."""
    return 2 if CONTEXT in feature else 1 if feature.startswith(WORD) else 0


def window_features(tokens: np.ndarray, doc: int, pos: int, half_window: int, doc_labels: dict[int, list[list[str]]],
                    word_of: Callable[[int], str]) -> set[str]:
    """The vocabulary features some token of one window carries. Window index k is the document's position
    ``pos - half_window + k``, and word i of a document sits at position i + 1 (after BOS)."""
    words = doc_labels.get(int(doc), [])
    out: set[str] = set()
    for k, token in enumerate(tokens.tolist()):
        if token == PAD_TOKEN:
            continue
        word = f"{WORD}{word_of(token)}"
        out.add(word)
        at = int(pos) - half_window + k
        for concept in words[at - 1] if 0 < at <= len(words) else ():
            out.update((concept, f"{word}{CONTEXT}{concept}"))
    return out


def best_feature(windows: Sequence[set[str]], truth: np.ndarray) -> tuple[float, str, bool]:
    """(best balanced accuracy, its feature, whether a single word reaches it) of "picked = the window carries the
    feature" against ``truth``; a feature no window carries picks nothing (0.5 on two classes)."""
    names = sorted(set().union(*windows), key=lambda f: (_complexity(f), f))
    present = np.array([[f in w for w in windows] for f in names], bool).reshape(len(names), len(windows))
    scores = np.array([balanced_accuracy(row, truth) for row in present]) if names else np.zeros(0)
    nothing = balanced_accuracy(np.zeros(len(truth), bool), truth)
    if not names or scores.max() <= nothing:
        return nothing, "", False
    best = int(np.argmax(scores))  # the first maximum: the simplest feature among ties
    is_word = np.array([_complexity(f) == 1 for f in names])
    single_word = bool(is_word.any() and scores[is_word].max() >= scores[best] - 1e-12)
    return float(scores[best]), names[best], single_word


def true_interpretability(examples: LatentExamples, cfg: AutointerpConfig, doc_labels: dict[int, list[list[str]]],
                          word_of: Callable[[int], str]) -> list[TrueInterpretabilityRow]:
    """One row per latent of ``examples`` (the scored latents), on the detection windows autointerp draws for it
    (``plan_latent``, same seed), with the CONCEPT100 flag as autointerp sets it."""
    concept = set(concept_subset(examples.latents, cfg.n_concept, cfg.seed).tolist())
    blank = lambda ids: [""] * len(ids)  # noqa: E731 - the windows' text is not needed, only their slots
    rows = []
    for i, latent in enumerate(examples.latents.tolist()):
        plan = plan_latent(examples, i, blank, cfg)
        windows = []
        for kind, slot in plan.detect_slots:
            ws = getattr(examples, kind)
            windows.append(window_features(ws.tokens[i, slot], ws.doc[i, slot], ws.pos[i, slot], cfg.half_window,
                                           doc_labels, word_of))
        score, feature, single_word = best_feature(windows, plan.detect_truth)
        rows.append(TrueInterpretabilityRow(int(latent), score, feature, single_word, int(latent) in concept))
    return rows
