"""Why a word latent does not steer: do its steered answers hold the words its explanation quotes, or the words
that usually follow them?

A latent explained by quoted words ("tokens 'art' 'nasty'") may read the current token (an input feature).
Added at every position, it would make the model act as if that token had just been read, and predict what
usually follows it, not the token. Over the demo's lake, for every generation of a steered word latent of a
trained model's SAE, per steering factor (0 = unsteered): the share of the answer's tokens that are the quoted
words, that are their usual successors (the 5 most frequent next words after them in the corpus, the quoted words
left out), and, as the baseline, that are the usual successors of another word latent of the same SAE (each set
without the other's words). Steering that writes the concept raises the first; steering an input feature raises
the second and not the third.

    .venv/bin/python bench/steering_successors.py [lake]
"""

import argparse
import re
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path

import duckdb
import numpy as np

TOP_SUCCESSORS = 5
TRAINED = ("toy-gemma2", "toy-qwen2")
BASELINES = ("pca", "ica", "neuron")


def quoted_words(explanation: str) -> set[str] | None:
    """The words an explanation of the shape "tokens 'a' 'b'" quotes; None for any other explanation."""
    words = set(re.findall(r"'([^']+)'", explanation)) if explanation.startswith("tokens ") else set()
    return words or None


def successors(words: set[str], bigrams: dict[str, Counter]) -> set[str]:
    """The ``TOP_SUCCESSORS`` words that most often follow any of ``words`` in the corpus, ``words`` left out."""
    after = Counter()
    for w in words:
        after.update(bigrams.get(w, {}))
    for w in words:
        after.pop(w, None)
    return {s for s, _ in after.most_common(TOP_SUCCESSORS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lake", nargs="?", type=Path, default=Path("lake"))
    lake = parser.parse_args().lake
    con = duckdb.connect()

    def table(name: str) -> str:
        return f"read_parquet('{lake / name}/**/*.parquet', hive_partitioning=true)"

    bigrams: dict[str, Counter] = defaultdict(Counter)
    for (text,) in con.execute(f"select text from {table('corpus')}").fetchall():
        for a, b in pairwise(text.split()):
            bigrams[a][b] += 1
    rows = con.execute(f"""
        select g.model, g.sae, g.latent, g.factor, g.generation, a.explanation
        from {table('steering_generations')} g join {table('autointerp')} a using (model, sae, latent)
        where g.model in {TRAINED} and g.sae not like 'oracle%' and g.sae not in {BASELINES}""").fetchall()
    words = {(m, s, lat): w for m, s, lat, _, _, e in rows if (w := quoted_words(e))}
    by_sae = defaultdict(list)
    for key in sorted(words):
        by_sae[key[:2]].append(key)
    other = {k: keys[(i + 1) % len(keys)] for keys in by_sae.values() for i, k in enumerate(keys)}
    after = {k: successors(w, bigrams) for k, w in words.items()}

    shares: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for model, sae, latent, factor, generation, _ in rows:
        key, tokens = (model, sae, latent), generation.split()
        if key not in words or not tokens or other[key] == key:
            continue
        own, theirs = after[key], after[other[key]]
        for name, found in (("quoted", words[key]), ("successors", own - theirs),
                            ("baseline", theirs - own - words[key])):
            shares[model, factor][name].append(sum(t in found for t in tokens) / len(tokens))
    print(f"{len(words)} word latents; share of answer tokens that are ...")
    print("model       factor  quoted words  their successors  another latent's successors (baseline)  ratio   n")
    for (model, factor), d in sorted(shares.items()):
        mean = {k: float(np.mean(v)) for k, v in d.items()}
        print(f"{model:11s} {factor:6.1f}  {mean['quoted']:12.4f}  {mean['successors']:16.4f}  "
              f"{mean['baseline']:38.4f}  {mean['successors'] / mean['baseline']:5.2f}  {len(d['quoted'])}")


if __name__ == "__main__":
    main()
