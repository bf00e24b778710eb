"""True interpretability on the toy world: how well does an exact one-feature explanation detect a latent?

The judge's protocol, with the judge's two parts replaced by exact ones. The explainer sees the windows the judge
explains from (top and importance-weighted, with activations) and names one feature of the world's fixed
vocabulary: the one whose tokens best coincide with the latent's firing tokens there (token-level balanced
accuracy of "the token carries the feature" against "the activation exceeds tau"). A perfect simulator then reads
"fires on <feature>" on the detection windows the judge scored (the same windows, the same truth: a window
activates when its max exceeds tau, random windows negative under SAEBench's rule) and picks a window when some
token in it carries the feature. The latent's true interpretability is that pick's balanced accuracy. The feature
is chosen on other windows than it is scored on, as the judge's explanation is; nothing of the judge goes into it
(no explanation, no word groups, no answer): only the windows, the activations and the grammar's labels.

The vocabulary is fixed by the world before any SAE is trained: its concepts (``topic:food``, ``role:subject``,
``sentiment:positive``...), its words (``word:dog``), and a word in a context (``word:dog@topic:animals``: the word
where the grammar labels it with that concept). Beside it, ``best_in_sample``: the best balanced accuracy any
feature of the vocabulary reaches on the detection windows themselves, chosen on the windows it is scored on: an
optimistic ceiling (a latent firing at random finds some word that splits 14 windows well).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from sae_models.arrow import schema_of
from sae_models.evals.autointerp import balanced_accuracy, concept_subset, plan_latent
from sae_models.evals.config import AutointerpConfig
from sae_models.evals.examples import PAD_TOKEN, LatentExamples, WindowSet

WORD = "word:"
CONTEXT = "@"  # word:<w>@<concept>: the word where the grammar labels it with the concept


@dataclass
class TrueInterpretabilityRow:
    """One row of ``true_interpretability``: a scored latent's exact one-feature explanation and its score."""

    latent: int = field(metadata={"arrow": pa.int32()})
    true_interpretability: float | None  # balanced detection accuracy of the feature chosen on the explanation
    #                                      windows, on the judge's detection windows (None: one class only there)
    true_feature: str  # that feature ("" when no token of the explanation windows fires)
    best_in_sample: float | None  # the best any feature reaches on the detection windows themselves (optimistic)
    concept100: bool  # in the CONCEPT100 subset whose mean is mu


TRUE_INTERPRETABILITY_SCHEMA = schema_of(TrueInterpretabilityRow)


def _complexity(feature: str) -> int:
    """0 a concept, 1 a word, 2 a word in a context: ties go to the simpler explanation."""
    return 2 if CONTEXT in feature else 1 if feature.startswith(WORD) else 0


def token_features(tokens: np.ndarray, doc: int, pos: int, half_window: int, doc_labels: dict[int, list[list[str]]],
                   word_of: Callable[[int], str]) -> list[set[str] | None]:
    """The vocabulary features each token of one window carries (None outside the document). Window index k is the
    document's position ``pos - half_window + k``, and word i of a document sits at position i + 1 (after BOS)."""
    words = doc_labels.get(int(doc), [])
    out: list[set[str] | None] = []
    for k, token in enumerate(tokens.tolist()):
        if token == PAD_TOKEN:
            out.append(None)
            continue
        word = f"{WORD}{word_of(token)}"
        at = int(pos) - half_window + k
        concepts = words[at - 1] if 0 < at <= len(words) else ()
        out.append({word, *concepts, *(f"{word}{CONTEXT}{c}" for c in concepts)})
    return out


def _ranked(names: set[str]) -> list[str]:
    return sorted(names, key=lambda f: (_complexity(f), f))


def _best(names: list[str], units: Sequence[set[str]], truth: np.ndarray) -> tuple[float, str]:
    """The first of ``names`` (simplest first) with the best balanced accuracy of "the unit carries it" against
    ``truth`` (as ``balanced_accuracy``: the mean hit rate over the classes present)."""
    column = {f: j for j, f in enumerate(names)}
    present = np.zeros((len(names), len(units)), bool)
    for u, carried in enumerate(units):
        present[[column[f] for f in carried], u] = True
    rates = [present[:, truth].mean(1)] if truth.any() else []
    rates += [(~present[:, ~truth]).mean(1)] if (~truth).any() else []
    scores = np.mean(rates, axis=0)
    best = int(np.argmax(scores))
    return float(scores[best]), names[best]


def explain_feature(units: Sequence[set[str]], firing: np.ndarray) -> str:
    """The exact explainer: over the features the tokens carry, the one whose tokens best coincide with the firing
    ones (token-level balanced accuracy); "" when no token fires."""
    if not firing.any() or not units:
        return ""
    return _best(_ranked(set().union(*units)), units, firing)[1]


def detection_accuracy(feature: str, windows: Sequence[set[str]], truth: np.ndarray) -> float | None:
    """Balanced accuracy of picking the windows that carry ``feature``; None when the truth has one class only
    (then picking nothing would score 1 whatever the feature)."""
    if truth.all() or not truth.any():
        return None
    return balanced_accuracy(np.array([feature in w for w in windows], bool), truth)


def best_in_sample(windows: Sequence[set[str]], truth: np.ndarray) -> float | None:
    """The best balanced accuracy any feature carried by these windows reaches on them (None: one class only)."""
    if truth.all() or not truth.any():
        return None
    names = _ranked(set().union(*windows))
    return max(_best(names, windows, truth)[0], 0.5) if names else 0.5


def _window(examples: LatentExamples, kind: str, i: int, slot: int, half: int, labels, word_of
            ) -> tuple[list[set[str] | None], np.ndarray]:
    ws: WindowSet = getattr(examples, kind)
    return token_features(ws.tokens[i, slot], ws.doc[i, slot], ws.pos[i, slot], half, labels, word_of), ws.acts[i, slot]


def true_interpretability(examples: LatentExamples, cfg: AutointerpConfig, doc_labels: dict[int, list[list[str]]],
                          word_of: Callable[[int], str]) -> list[TrueInterpretabilityRow]:
    """One row per latent of ``examples`` (the scored latents), on the explanation and detection windows autointerp
    draws for it (``plan_latent``, same seed), with the CONCEPT100 flag as autointerp sets it."""
    concept = set(concept_subset(examples.latents, cfg.n_concept, cfg.seed).tolist())
    blank = lambda ids: [""] * len(ids)  # noqa: E731 - the windows' text is not needed, only their slots
    rows = []
    for i, latent in enumerate(examples.latents.tolist()):
        plan = plan_latent(examples, i, blank, cfg)
        units, firing = [], []
        for kind, slot in plan.explain_slots:
            tokens, acts = _window(examples, kind, i, slot, cfg.half_window, doc_labels, word_of)
            units += [t for t in tokens if t is not None]
            firing += [a > plan.tau for t, a in zip(tokens, acts, strict=True) if t is not None]
        feature = explain_feature(units, np.array(firing, bool))
        windows = [set().union(*(t for t in _window(examples, kind, i, slot, cfg.half_window, doc_labels,
                                                    word_of)[0] if t is not None))
                   for kind, slot in plan.detect_slots]
        rows.append(TrueInterpretabilityRow(int(latent), detection_accuracy(feature, windows, plan.detect_truth),
                                            feature, best_in_sample(windows, plan.detect_truth),
                                            int(latent) in concept))
    return rows
