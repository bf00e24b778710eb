"""A sweep trained from one streamed LM pass against extracting once and training each SAE from the cache.

Both sides train the same N TopK SAEs (k spread over 8..64) for the same steps on the same documents, which hold
as many tokens as the steps consume, so each token is seen once on both sides:

- ``cached``: extract the documents' activations once into the lake's Parquet shards (float16), then train each
  SAE from them in turn (``train_sae``), as ``[sweep] source = "cache"`` does;
- ``streamed``: one pass of the LM over the documents through a mixing buffer (on the CPU) feeds all N trainers
  at each step (``ActivationStream`` and ``train_saes``), as ``[sweep] source = "stream"`` does.

By default the model is a randomly initialised Gemma-2 of d_model 256 read after its last layer: with
``--layers 1`` (the default) its forward pass costs about as much per token as one training step of an SAE of
width 2,048, with ``--layers 3`` about three times as much. ``--preset gemma-2-2b`` takes the real Gemma-2-2B
config (random weights, read at layer 12; bfloat16 on a GPU). The text is the toy world's. Each side runs in its
own subprocess, in alternating rounds, and reports its wall time (the model's construction left out) and peak
memory (resident, and on a GPU the most allocated); the ratio is cached / streamed per round.

``--memory`` instead trains one streamed SAE on T and 10 T tokens (each in its own subprocess) and reports the
peak memory of each, beside the bytes the cache of those tokens would take on disk.

    python bench/stream_training.py                      # CPU: N = 1, 4, 8 SAEs, 2 rounds
    python bench/stream_training.py --layers 3           # a heavier LM
    python bench/stream_training.py --memory             # peak memory as the training tokens grow 10x
    python bench/stream_training.py --preset gemma-2-2b --width 16384 --batch 4096 --buffer 81920 \\
        --steps 200 --variants 1 6 30                    # a GPU: the paper's shapes, tokens/s per side
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTEXT = 128


def _small_lm(layers: int):
    import torch
    from transformers import AutoModelForCausalLM, Gemma2Config

    from sae_models.lm import LoadedLM, load_tokenizer
    from sae_models.toyworld import save_tokenizer

    tok_dir = Path(tempfile.mkdtemp()) / "tok"
    save_tokenizer(tok_dir)
    tok = load_tokenizer(str(tok_dir))
    config = Gemma2Config(hidden_size=256, intermediate_size=1024, num_hidden_layers=layers, num_attention_heads=4,
                          num_key_value_heads=2, head_dim=64, vocab_size=len(tok), max_position_embeddings=CONTEXT,
                          pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False)
    return LoadedLM(model, tok, "bench-gemma2", "gemma2", layers, 256), layers - 1


def _lm(opts: dict):
    """(model, hook layer): the small Gemma-2 of ``--layers`` layers, or a real config's random model."""
    if not opts["preset"]:
        return _small_lm(opts["layers"])
    import torch
    from extract import build

    cuda = torch.cuda.is_available()
    return build(opts["preset"], "cuda" if cuda else "cpu", torch.bfloat16 if cuda else torch.float32)


def _documents(tokens: int) -> list[tuple[int, str]]:
    """Toy-world documents of several stories each (near the context), about ``tokens`` tokens in all."""
    from sae_models.toyworld import ToyWorld

    world = ToyWorld(0)
    per_doc = CONTEXT - 8  # four stories run past the context, which cuts them
    return [(i, " ".join(world.story().text for _ in range(4))) for i in range(tokens // per_doc + 1)]


def _saes(n: int, d_model: int, width: int):
    import torch

    from sae_models.sae import SAEConfig, build_sae

    ks = [round(8 * 8 ** (i / max(1, n - 1))) for i in range(n)]  # 8 .. 64, spread geometrically
    out = []
    for k in ks:
        torch.manual_seed(0)
        out.append(build_sae(SAEConfig("topk", d_model, width, k=k)))
    return out


def _side(opts: dict) -> dict:
    """One side's run in this process: wall time from the model on, and what was trained."""
    import torch

    from sae_models.activation_store import ActivationReader, write_shards
    from sae_models.activation_stream import ActivationStream
    from sae_models.lm import ExtractionConfig, activation_extractor, iter_activations
    from sae_models.sae.train import TrainConfig, Trainer, train_sae, train_saes

    torch.set_num_threads(2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    (lm, layer), steps, batch = _lm(opts), opts["steps"], opts["batch"]
    cfg = TrainConfig(steps=steps, batch_size=batch, lr_warmup_steps=10, progress_s=0)
    docs, extraction = _documents(steps * batch), ExtractionConfig(batch_size=32, context=CONTEXT)
    saes, d = _saes(opts["n"], lm.d_model, opts["width"]), lm.d_model
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        sample = write_shards(iter_activations(lm, docs[:64], extraction, layer=layer), Path(tmp) / "sample", d)
        if opts["side"] == "cached":
            stats = write_shards(iter_activations(lm, docs, extraction, layer=layer), Path(tmp) / "cache", d)
            extract_s = time.perf_counter() - start
            reader = ActivationReader(Path(tmp) / "cache")
            for sae in saes:
                train_sae(sae, reader, cfg, log=lambda _: None, device=device)
            cache_bytes = stats.bytes
        else:
            stream = ActivationStream(activation_extractor(lm, extraction, layer=layer), docs, opts["buffer"], 32)
            train_saes([Trainer(s, cfg, log=lambda _: None, device=device) for s in saes], stream, cfg,
                       ActivationReader(Path(tmp) / "sample"))
            cache_bytes = extract_s = 0
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0
    return {"seconds": seconds, "extract_s": extract_s, "cache_bytes": cache_bytes, "sample_tokens": sample.rows,
            "d": d, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "gpu_mb": gpu_mb}


def _run(opts: dict, **changes) -> dict:
    done = subprocess.run([sys.executable, __file__, "--side", json.dumps(opts | changes)], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def _compare(opts: dict, variants: list[int], rounds: int) -> None:
    steps, batch = opts["steps"], opts["batch"]
    model = opts["preset"] or f"a Gemma-2 of d_model 256 and {opts['layers']} layers"
    print(f"{steps} steps x {batch} tokens per SAE ({steps * batch:,} tokens, each seen once), {model}, "
          f"width {opts['width']}, mixing buffer {opts['buffer']:,}; {rounds} alternating rounds")
    print("| SAEs | cached (extract once, train each) | of which extraction | streamed (one pass) | "
          "cached / streamed | streamed SAE tokens/s | peak RSS cached | peak RSS streamed | cache on disk |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in variants:
        runs = {"cached": [], "streamed": []}
        for _ in range(rounds):
            for side in runs:
                runs[side].append(_run(opts, side=side, n=n))
        ratios = [c["seconds"] / s["seconds"] for c, s in zip(runs["cached"], runs["streamed"], strict=True)]
        med = {side: statistics.median(r["seconds"] for r in rs) for side, rs in runs.items()}
        rss = {side: max(r["max_rss_mb"] for r in rs) for side, rs in runs.items()}
        extract = statistics.median(r["extract_s"] for r in runs["cached"])
        disk = runs["cached"][0]["cache_bytes"] / 2**20
        print(f"| {n} | {med['cached']:.1f} s | {extract:.1f} s | {med['streamed']:.1f} s | "
              f"**{statistics.median(ratios):.2f}x** (rounds {', '.join(f'{r:.2f}' for r in ratios)}) | "
              f"{n * steps * batch / med['streamed']:,.0f} | {rss['cached']:.0f} MB | {rss['streamed']:.0f} MB | "
              f"{disk:.0f} MB |")
        if runs["streamed"][0]["gpu_mb"]:
            print(f"  peak GPU memory, {n} SAEs: cached {max(r['gpu_mb'] for r in runs['cached']):.0f} MB, "
                  f"streamed {max(r['gpu_mb'] for r in runs['streamed']):.0f} MB")


def _memory(opts: dict) -> None:
    print("| training tokens | streamed: wall | streamed: peak RSS | the cache of those tokens on disk |")
    print("|---|---|---|---|")
    for factor in (1, 10):
        run = _run(opts, side="streamed", n=1, steps=opts["steps"] * factor)
        tokens = opts["steps"] * factor * opts["batch"]
        print(f"| {tokens:,} | {run['seconds']:.1f} s | {run['max_rss_mb']:.0f} MB | "
              f"{tokens * run['d'] * 2 / 2**20:.0f} MB (float16) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--buffer", type=int, default=16_384, help="mixing buffer rows (default 16 batches; "
                                                                   "SAELens: 81,920, 20 of its 4,096)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--layers", type=int, default=1, help="the small Gemma-2's layers (1: its forward costs "
                                                                "about one SAE step per token)")
    parser.add_argument("--preset", choices=["gemma-2-2b", "small-gemma2"], help="a real config, random weights")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--side", help=argparse.SUPPRESS)  # internal: one side in a subprocess, its options as JSON
    args = parser.parse_args()
    if args.side:
        print(json.dumps(_side(json.loads(args.side))))
        return
    opts = {k: getattr(args, k) for k in ("steps", "batch", "width", "buffer", "layers", "preset")}
    if args.memory:
        _memory(opts)
    else:
        _compare(opts, args.variants, args.rounds)


if __name__ == "__main__":
    main()
