"""Is IOI learned by design or by luck of the seed? Train each toy family with seeds 0, 1 and 2 on the demo's
corpus and schedule (lake.toml's [corpus] and [models.toy], under its CPU pin), and follow held-out IOI accuracy
per order (ABBA: the indirect object named first; BABA: second) as training goes.

    python bench/ioi_seeds.py                       # both families, seeds 0 1 2, IOI every 150 steps
    python bench/ioi_seeds.py --families qwen2 --seeds 3 4 --every 200

Prints one line per checkpoint and a table at the end: the final accuracies, and the first step at which both
orders reached 0.95 (the transition). The models are those ``language_model`` trains (same settings, same
code); nothing is written to the lake.
"""

import argparse
import tempfile
import time
from pathlib import Path

import assets.definitions  # noqa: F401 - the code location's load: lake.toml's CPU pin, as a run worker has it
from assets.lakehouse.config import load_settings
from assets.shared.pin import pin_process

BAR = 0.95


def follow(family: str, seed: int, every: int, texts: dict[str, list[str]], toy) -> dict:
    """Train one (family, seed) and record held-out IOI per order every ``every`` steps."""
    from sae_models.toyworld import ioi_scores, train_toy_lm
    from sae_models.toyworld.grammar import IOI_ORDERS

    cfg = toy.model_copy(update={"family": family, "seed": seed})
    first_at: list[int] = []

    def probe(step: int, model, tokenizer) -> None:
        if step % every and step != cfg.steps:
            return
        model.eval()
        accuracy = [ioi_scores(model, tokenizer, orders=(order,))[0] for order in IOI_ORDERS]
        model.train()
        if min(accuracy) >= BAR and not first_at:
            first_at.append(step)
        print(f"  {family} seed {seed} step {step}: " + ", ".join(
            f"{o} {a:.3f}" for o, a in zip(IOI_ORDERS, accuracy, strict=True)), flush=True)

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        report = train_toy_lm(texts["lm_train"], texts["lm_eval"], cfg, Path(out), log=lambda _: None, on_step=probe)
    return {"family": family, "seed": seed, "abba": report.ioi_accuracy_abba, "baba": report.ioi_accuracy_baba,
            "train pairs": report.ioi_accuracy_train_pairs, "logit diff": report.ioi_logit_diff,
            f"first step >= {BAR}": first_at[0] if first_at else "never", "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["gemma2", "qwen2"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--every", type=int, default=150, help="steps between IOI measurements")
    args = parser.parse_args()
    settings = load_settings()
    print(pin_process(settings, apply=True) or "CPU not pinned")
    from assets.defs.world.corpus import toyworld_corpus

    corpus = toyworld_corpus(settings.corpus)
    split = corpus.column("split").to_pylist()
    texts = {s: [t for t, k in zip(corpus.column("text").to_pylist(), split, strict=True) if k == s]
             for s in ("lm_train", "lm_eval")}
    toys = {m.toy.family: m.toy for m in settings.models if m.toy is not None}
    rows = [follow(family, seed, args.every, texts, toys[family])
            for family in args.families for seed in args.seeds]
    print("\n| family | seed | held-out ABBA | held-out BABA | training pairs | logit diff | "
          f"first step both >= {BAR} | seconds |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['seed']} | {r['abba']:.3f} | {r['baba']:.3f} | {r['train pairs']:.3f} | "
              f"{r['logit diff']:.2f} | {r[f'first step >= {BAR}']} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
