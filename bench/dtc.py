"""Delta Token Confidence speed: latents/s of ``run_feature_scores`` (the prompt's prefix run once with a KV cache,
then many latents' last positions at a time against it, with the logit lens and S_out) against the naive way,
one full forward pass of the prompt per latent plus the base pass (``naive_delta_c``). Both sides run in the
same process on the same model and SAE, interleaved over several rounds (medians); the naive side is timed on a
sample of latents and reported per latent. Models are randomly initialised (no weights are needed to time
them); the SAE is a randomly initialised ReLU SAE of ``--width`` x d_model latents, every latent scored.

    python bench/dtc.py                                   # the toy world's model shape, then small-gemma2
    python bench/dtc.py --preset gemma-2-2b --dtype bfloat16 --latents 16384 --batch 1024   # a GPU
"""

import argparse
import statistics

import torch
from extract import PRESETS, build, timed
from steer import toy_model

from sae_models.evals.config import SelectionConfig
from sae_models.evals.feature_scores import naive_delta_c, run_feature_scores
from sae_models.lm import LoadedLM
from sae_models.sae import SAEConfig, build_sae


def random_sae(lm: LoadedLM, width: int, dtype: torch.dtype):
    torch.manual_seed(0)
    sae = build_sae(SAEConfig("relu", lm.d_model, width * lm.d_model, sparsity_coefficient=0.1))
    with torch.no_grad():
        sae.b_enc.fill_(0.1)  # some codes positive at the prompt's last token, so a_max > 0
    return sae.to(lm.device, dtype)


def run(name: str, lm: LoadedLM, layer: int, width: int, n_latents: int | None, batch: int, naive_latents: int,
        repeats: int, dtype: torch.dtype) -> None:
    sae = random_sae(lm, width, dtype)
    latents = list(range(min(n_latents or sae.cfg.d_sae, sae.cfg.d_sae)))
    cfg = SelectionConfig(batch_size=batch)
    sample = latents[:naive_latents]

    def fast() -> None:
        run_feature_scores(lm, sae, layer, "resid_post", latents, cfg)

    def naive() -> None:
        for f in sample:
            naive_delta_c(lm, sae, layer, "resid_post", f, cfg)

    fast()  # warm-up
    naive_delta_c(lm, sae, layer, "resid_post", 0, cfg)
    times: dict[str, list[float]] = {"fast": [], "naive": []}
    for _ in range(repeats):
        times["fast"].append(timed(fast))
        times["naive"].append(timed(naive))
    fast_rate = len(latents) / statistics.median(times["fast"])
    naive_rate = len(sample) / statistics.median(times["naive"])
    print(f"{name}: d_model {lm.d_model}, vocab {lm.model.config.vocab_size}, layer {layer}, {len(latents)} latents "
          f"(batch {batch}), {repeats} interleaved rounds (medians)")
    print(f"  run_feature_scores (cached prefix, batched last step): {fast_rate:10.1f} latents/s, all {len(latents)} "
          f"in {len(latents) / fast_rate:.2f} s")
    print(f"  naive (a full forward per latent, timed on {len(sample)}): {naive_rate:10.1f} latents/s")
    print(f"  speed-up: {fast_rate / naive_rate:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), nargs="+", default=None,
                        help="real families' configs, random weights (default: the toy shape and small-gemma2)")
    parser.add_argument("--width", type=int, default=8, help="SAE latents per d_model")
    parser.add_argument("--latents", type=int, default=None, help="latents scored (default: all)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--naive-latents", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype)
    torch.set_grad_enabled(False)
    print(f"on {device}, {args.dtype}, {torch.get_num_threads()} threads")
    models = [("toy-gemma2 shape", *toy_model(device))] if args.preset is None else []
    for preset in args.preset or ["small-gemma2"]:
        models.append((preset, *build(preset, device, dtype)))
    for name, lm, layer in models:
        run(name, lm, layer, args.width, args.latents, args.batch, args.naive_latents, args.repeats, dtype)


if __name__ == "__main__":
    main()
