"""Feature patching speed: patched runs/s (one latent set on one prompt pair) of the batched path, many
candidate sets per forward pass and only the blocks above the layer run (``Patcher``, as ``run_patching`` uses
it), against one run at a time with the whole prompt rerun and the patch added at the hook; the middle row
batches without skipping the prefix. The sets are one greedy step's: every differing latent left out in turn.
All sides score the same sets on the same pairs in one process, interleaved over rounds (medians); the
one-at-a-time side is timed on a sample of the sets. The model is randomly initialised (no weights are needed to
time it); the SAE is a ReLU SAE of ``--width`` x d_model latents with enough codes positive that ~all differ.

    python bench/patch.py                     # the toy world's model shape (hidden 64, 4 layers, patched at 2)
    python bench/patch.py --preset small-gemma2
    python bench/patch.py --lake lake         # lazy against exact greedy on the demo's patched dictionaries

``--lake`` times exact greedy against lake.toml's lazy settings on each dictionary the demo patched (the trained
toy models and SAEs of the lake, lake.toml's fit pairs and thresholds) and compares their sets: latents kept at
each threshold and the fit KL there.
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from extract import PRESETS, build, timed
from steer import toy_model

from sae_models.evals.patching import Patcher, prepare_pairs, toyworld_ioi_pairs
from sae_models.lm import hook_module
from sae_models.lm.hooks import edit_output
from sae_models.sae import SAEConfig, build_sae


def compare_lazy(lake: Path) -> None:
    """Exact against lazy greedy on every dictionary with a ``patching`` partition in ``lake``."""
    from assets.lakehouse.config import load_settings
    from sae_models.evals.patching import drops_at, greedy_path
    from sae_models.lm import load_lm
    from sae_models.sae import load_sae

    settings = load_settings()
    cfg = settings.patching
    fit, _ = toyworld_ioi_pairs(cfg.n_pairs, cfg.n_eval_pairs, cfg.seed)
    thresholds = sorted(cfg.thresholds)
    print(f"lazy (refresh_every {cfg.refresh_every}, shortlist {cfg.shortlist}) against exact greedy; "
          f"{len(thresholds)} thresholds, {len(fit)} fit pairs, {torch.get_num_threads()} threads")
    same, total, times = 0, 0, {"exact": 0.0, "lazy": 0.0}
    for model_dir in sorted((lake / "patching").glob("model=*")):
        slug = model_dir.name.split("=", 1)[1]
        entry = settings.model(slug)
        lm = load_lm(str(lake / "models" / f"model={slug}"))
        batch = prepare_pairs(lm, hook_module(lm.model, entry.layer, entry.hook), fit)
        for sae_dir in sorted(model_dir.glob("sae=*")):
            name = sae_dir.name.split("=", 1)[1]
            patcher = Patcher(lm, entry.layer, entry.hook, load_sae(lake / "saes" / f"model={slug}" / f"sae={name}"),
                              batch, cfg.batch_size)
            sets = {}
            for mode, refresh in (("exact", 1), ("lazy", cfg.refresh_every)):
                start_time = time.perf_counter()
                start, dropped, path = greedy_path(patcher, thresholds, refresh, cfg.shortlist)
                times[mode] += time.perf_counter() - start_time
                sets[mode] = [(len(start) - drops_at(path, t), path[drops_at(path, t) - 1] if drops_at(path, t)
                               else None) for t in thresholds]
            sizes = [(e[0], lz[0]) for e, lz in zip(sets["exact"], sets["lazy"], strict=True)]
            same += sum(e == lz for e, lz in sizes)
            total += len(sizes)
            print(f"  {slug} {name}: latents kept exact / lazy " + " ".join(f"{e}/{lz}" for e, lz in sizes))
    print(f"same size at {same} of {total} thresholds; exact {times['exact']:.1f} s, lazy {times['lazy']:.1f} s "
          f"({times['exact'] / times['lazy']:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None)
    parser.add_argument("--width", type=int, default=2, help="SAE latents per d_model")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2048, help="patched runs per forward pass")
    parser.add_argument("--naive-sets", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lake", type=Path, default=None, help="compare lazy and exact greedy on this lake")
    args = parser.parse_args()
    if args.lake is not None:
        torch.set_grad_enabled(False)
        compare_lazy(args.lake)
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_grad_enabled(False)
    lm, layer = toy_model(device) if args.preset is None else build(args.preset, device, torch.float32)
    torch.manual_seed(0)
    sae = build_sae(SAEConfig("relu", lm.d_model, args.width * lm.d_model, sparsity_coefficient=0.1)).to(device)
    with torch.no_grad():
        sae.b_enc.fill_(0.3)
    pairs, _ = toyworld_ioi_pairs(args.pairs, 0, seed=0)
    batch = prepare_pairs(lm, hook_module(lm.model, layer, "resid_post"), pairs)
    resumed = Patcher(lm, layer, "resid_post", sae, batch, args.batch)
    rerun = Patcher(lm, layer, "resid_post", sae, batch, args.batch, resume=False)
    candidates = resumed.candidates()
    sample = candidates[:args.naive_sets]
    sides = {"batched, resumed above the layer": (lambda: resumed.drop_scores(candidates).tolist(), candidates),
             "batched, prefix rerun": (lambda: rerun.drop_scores(candidates).tolist(), candidates),
             "one run at a time, prefix rerun": (lambda: one_at_a_time(resumed, candidates, sample), sample)}
    results = {name: [] for name in sides}
    scores = {}
    for _ in range(args.repeats):
        for name, (step, left_out) in sides.items():
            results[name].append(len(left_out) * len(pairs) / timed(lambda name=name, step=step: scores.update(
                {name: step()})))
    reference = scores["one run at a time, prefix rerun"]
    fast = scores["batched, resumed above the layer"][:len(sample)]
    print(f"on {device}, {torch.get_num_threads()} threads; {args.preset or 'toy-gemma2 shape'}: d_model "
          f"{lm.d_model}, patched at layer {layer}; {len(candidates)} differing latents x {len(pairs)} pairs; "
          f"{args.repeats} interleaved rounds (medians)")
    base = statistics.median(results["one run at a time, prefix rerun"])
    for name, rates in results.items():
        rate = statistics.median(rates)
        print(f"  {name:34s} {rate:10.0f} patched runs/s  {rate / base:6.1f}x")
    print(f"  same scores: max |difference| {np.abs(np.asarray(fast) - np.asarray(reference)).max():.2e} nats")


def one_at_a_time(patcher: Patcher, candidates: list[int], left_out: list[int]) -> list[float]:
    """The mean KL of the candidate set without each of ``left_out``, one forward pass per (set, pair): the
    clean prompt run whole with the patch added at the hook."""
    batch, module = patcher.batch, hook_module(patcher.lm.model, patcher.layer, "resid_post")
    out = []
    for latent in left_out:
        added = patcher.added([c for c in candidates if c != latent])
        kls = []
        for i in range(len(batch.answer)):
            enc = {k: v[i:i + 1] for k, v in batch.enc.items()}
            with edit_output(module, lambda h, row=added[i:i + 1]: h + row.to(h.dtype)):
                logprobs = patcher.lm.model(**enc).logits[:, -1].float().log_softmax(-1)
            counter = batch.counter_logprobs[i:i + 1]
            kls.append(float((counter.exp() * (counter - logprobs)).sum()))
        out.append(float(np.mean(kls)))
    return out


if __name__ == "__main__":
    main()
