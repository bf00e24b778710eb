"""Runs at a time: the same dictionaries of the demo's lake materialized one at a time and two at a time, each
side in worker processes as ``sae-lake demo`` runs them (the workers' start included), the sides alternating.

    python bench/demo_workers.py                  # 8 dictionaries of both models, 3 rounds
    python bench/demo_workers.py --rounds 5 --pairs "toy-gemma2|topk-k8" "toy-qwen2|pca"

Needs the demo's lake and Dagster instance (``make demo``): the runs rewrite those partitions, with the same
tables. Prints each side's wall time per round, their medians and the ratio.
"""

import argparse
import statistics
import time

import assets.definitions  # noqa: F401 - the code location's load: lake.toml's CPU pin, as a run worker has it
from assets.demo import _add_partitions, _instance, in_workers
from assets.lakehouse.config import load_settings

PAIRS = ["toy-gemma2|topk-k8", "toy-gemma2|jumprelu-t8", "toy-gemma2|pca", "toy-gemma2|oracle-0.5-s1",
         "toy-qwen2|topk-k8", "toy-qwen2|gated-0.2", "toy-qwen2|neuron", "toy-qwen2|oracle-0.5-s1"]


def one_side(instance, settings, plan: list, workers: int) -> float:
    """Wall seconds of ``plan`` in ``workers`` worker processes."""
    start = time.perf_counter()
    with in_workers(instance, settings, plan, workers) as outcomes:
        for outcome in outcomes:
            if outcome.error:
                raise SystemExit(outcome.error)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=PAIRS, help="model|variant partitions of the demo's lake")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import dagster as dg

    settings = load_settings()
    instance = _instance()
    _add_partitions(instance, settings)
    plan = [("sae_sweep", dg.MultiPartitionKey(dict(zip(("model", "sae"), p.split("|"), strict=True))))
            for p in args.pairs]
    times: dict[int, list[float]] = {1: [], 2: []}
    for round_ in range(1, args.rounds + 1):
        for workers in (1, 2):
            times[workers].append(one_side(instance, settings, plan, workers))
            print(f"round {round_}: {len(plan)} dictionaries, {workers} at a time: {times[workers][-1]:.1f} s",
                  flush=True)
    one, two = (statistics.median(times[w]) for w in (1, 2))
    print(f"\nmedian over {args.rounds} rounds: one at a time {one:.1f} s "
          f"(range {min(times[1]):.1f}-{max(times[1]):.1f}), two at a time {two:.1f} s "
          f"(range {min(times[2]):.1f}-{max(times[2]):.1f}): {one / two:.2f}x")


if __name__ == "__main__":
    main()
