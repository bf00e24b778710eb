"""Why a word latent does not steer: do its steered answers hold the words its explanation quotes, or the words
that usually follow them?

A latent explained by quoted words ("tokens 'art' 'nasty'") may read the current token (an input feature).
Added at every position, it would make the model act as if that token had just been read, and predict what
usually follows it, not the token. Over the demo's lake, for every steered word latent of a trained model's SAE
(no baselines, oracles or random directions), unsteered and at the largest factor: the share of the answer's
tokens that are the quoted words, and that are their usual successors (the 5 most frequent next words after
them in the corpus, the quoted words left out). The control for each share is the same word set counted in the
answers of another word latent of the same SAE, steered at the same factor, so that what strong steering does to
any text (longer, more repetitive answers, fewer full stops) cancels. The effect is the difference in
differences: (own, steered - unsteered) - (control, steered - unsteered), per latent, with a 95% bootstrap
interval over latents. Latents are split into those whose quoted words are all among the 20 commonest corpus
tokens (punctuation and function words) and the others (content words).

    .venv/bin/python bench/steering_successors.py [lake]
"""

import argparse
import re
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

import numpy as np

from assets.lakehouse.lake import Lake
from assets.lakehouse.sql import read_query

TOP_SUCCESSORS = 5
COMMON = 20  # the commonest corpus tokens: a latent quoting only these reads punctuation and function words
TRAINED = ("toy-gemma2", "toy-qwen2")
NOT_SAES = ("pca", "ica", "neuron", "random")
RESAMPLES = 2000


def quoted_words(explanation: str) -> set[str] | None:
    """The words an explanation of the shape "tokens 'a' 'b'" quotes; None for any other explanation."""
    words = set(re.findall(r"'([^']+)'", explanation)) if explanation.startswith("tokens ") else set()
    return words or None


def successors(words: set[str], bigrams: dict[str, Counter]) -> set[str]:
    """The ``TOP_SUCCESSORS`` words that most often follow any of ``words`` in the corpus, ``words`` left out; ties
    by the word itself, so that neither the corpus's row order nor Python's string hashing picks them."""
    after = Counter()
    for w in words:
        after.update(bigrams.get(w, {}))
    for w in words:
        after.pop(w, None)
    return set(sorted(after, key=lambda s: (-after[s], s))[:TOP_SUCCESSORS])


def share(answers: list[list[str]], found: set[str]) -> float:
    """The mean share of an answer's tokens that are in ``found``; nan without a non-empty answer."""
    shares = [sum(t in found for t in a) / len(a) for a in answers if a]
    return float(np.mean(shares)) if shares else float("nan")


def interval(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    means = values[rng.integers(0, len(values), (RESAMPLES, len(values)))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lake", nargs="?", type=Path, default=Path("lake"))
    lake = Lake(parser.parse_args().lake)

    def rows_of(query: str) -> list[tuple]:
        """The rows of a query on the lake's catalog (its tables by name)."""
        return list(zip(*read_query(lake, query).to_pydict().values(), strict=True))

    bigrams: dict[str, Counter] = defaultdict(Counter)
    counts: Counter = Counter()
    for (text,) in rows_of("select text from corpus"):
        tokens = text.split()
        counts.update(tokens)
        for a, b in pairwise(tokens):
            bigrams[a][b] += 1
    common = {w for w, _ in counts.most_common(COMMON)}
    rows = rows_of(f"""
        select g.model, g.sae, g.latent, g.factor, g.generation, a.explanation
        from steering_generations g join autointerp a using (model, sae, latent)
        where g.model in {TRAINED} and g.sae not like 'oracle%' and g.sae not in {NOT_SAES}""")
    top = max(r[3] for r in rows)
    answers: dict[tuple, dict[float, list[list[str]]]] = defaultdict(lambda: defaultdict(list))
    words = {}
    for model, sae, latent, factor, generation, explanation in rows:
        if (w := quoted_words(explanation)) and factor in (0.0, top):
            words[model, sae, latent] = w
            answers[model, sae, latent][factor].append(generation.split())
    by_sae = defaultdict(list)
    for key in sorted(words):
        by_sae[key[:2]].append(key)
    control = {k: keys[(i + 1) % len(keys)] for keys in by_sae.values() for i, k in enumerate(keys) if len(keys) > 1}

    effects: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for key, other in control.items():
        sets = {"quoted": words[key], "successors": successors(words[key], bigrams) - words[other]}
        did = [share(answers[key][top], s) - share(answers[key][0.0], s)
               - (share(answers[other][top], s) - share(answers[other][0.0], s)) for s in sets.values()]
        if np.isfinite(did).all():  # both latents answered at both factors
            group = "function words" if words[key] <= common else "content words"
            effects[key[0], group].append(tuple(did))
    rng = np.random.default_rng(0)
    print(f"unsteered -> {top} x m_f; difference in differences against another latent's answers, per latent:")
    print("model       latents          n    quoted words [95% CI]        successors [95% CI]          "
          "latents with successors up")
    for (model, group), values in sorted(effects.items()):
        quoted, after = (np.array(v) for v in zip(*values, strict=True))
        lo_q, hi_q = interval(quoted, rng)
        lo_s, hi_s = interval(after, rng)
        print(f"{model:11s} {group:15s} {len(values):4d}  {quoted.mean():+.4f} [{lo_q:+.4f}, {hi_q:+.4f}]   "
              f"{after.mean():+.4f} [{lo_s:+.4f}, {hi_s:+.4f}]   {(after > 0).mean():.0%}")
    print("what strong steering does to any answer (all word latents' answers):")
    for factor in (0.0, top):
        texts = [a for per in answers.values() for a in per[factor] if a]
        print(f"  factor {factor}: {np.mean([len(a) for a in texts]):.1f} tokens, distinct-token share "
              f"{np.mean([len(set(a)) / len(a) for a in texts]):.3f}")


if __name__ == "__main__":
    main()
