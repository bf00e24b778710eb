"""Steered generation speed: generations/s and tokens/s of batched steered generation, as ratios against a
one-row-at-a-time loop over the same rows (batching) and against plain unsteered ``generate`` on the same
batches (hook overhead). All sides run in the same process on the same rows, interleaved over several
rounds (medians), so the ratios hold on a noisy shared machine. Every side samples at temperature 1 with
the per-row streams of ``sae_models.lm.generate``.

    python bench/steer.py                              # the toy world's model shape (random weights)
    python bench/steer.py --model lake/models/model=toy-gemma2   # a trained toy model from the demo
    python bench/steer.py --preset gemma-2-2b --dtype bfloat16 --batch 64 256 --new-tokens 128   # a GPU
"""

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from extract import PRESETS, build, timed
from transformers import AutoModelForCausalLM

from sae_models.lm import LoadedLM, hook_module, load_lm
from sae_models.lm.generate import generate_batch, row_seed
from sae_models.lm.intervene import add_vectors
from sae_models.lm.loading import load_tokenizer
from sae_models.toyworld import ToyModelConfig, save_tokenizer
from sae_models.toyworld.grammar import TOPICS, instruction_prompt
from sae_models.toyworld.train import hf_config


def toy_model(device: str) -> tuple[LoadedLM, int]:
    """The demo's toy Gemma-2 shape (hidden 64, 4 layers), randomly initialised."""
    out = Path(tempfile.mkdtemp()) / "toy"
    save_tokenizer(out)
    config = hf_config(ToyModelConfig(family="gemma2", hidden=64, layers=4), load_tokenizer(str(out)))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    return load_lm(str(out), device=device), 2


def run(lm: LoadedLM, layer: int, rows: int, batch: int, new_tokens: int, repeats: int, loop_rows: int) -> None:
    prompts = [instruction_prompt(t) for t in TOPICS] * (rows // len(TOPICS) + 1)
    prompts, seeds = prompts[:rows], [row_seed("bench", i) for i in range(rows)]
    g = torch.Generator().manual_seed(0)
    vectors = (3 * torch.randn(rows, lm.d_model, generator=g)).to(lm.device, next(lm.model.parameters()).dtype)
    module = hook_module(lm.model, layer, "resid_post")

    def batched(steer: bool) -> list:
        out = []
        for i in range(0, rows, batch):
            edit = add_vectors(vectors[i:i + batch]) if steer else None
            out += generate_batch(lm, prompts[i:i + batch], seeds[i:i + batch], new_tokens, 1.0, module, edit)
        return out

    def one_by_one() -> list:
        return [generate_batch(lm, [prompts[i]], [seeds[i]], new_tokens, 1.0, module, add_vectors(vectors[i:i + 1]))[0]
                for i in range(loop_rows)]

    tokens = sum(x.n_tokens for x in batched(True))  # warm-up, and the token count of the batched rows
    times: dict[str, list[float]] = {"steered": [], "plain": [], "loop": []}
    for _ in range(repeats):
        times["steered"].append(timed(lambda: batched(True)))
        times["plain"].append(timed(lambda: batched(False)))
        if loop_rows:
            times["loop"].append(timed(one_by_one) * rows / loop_rows)  # per the same number of rows
    med = {k: statistics.median(v) for k, v in times.items() if v}
    print(f"rows {rows}, batch {batch}, {new_tokens} new tokens, {repeats} interleaved repeats (medians)")
    print(f"  batched steered: {rows / med['steered']:8.1f} generations/s {tokens / med['steered']:10.0f} tokens/s")
    print(f"  plain generate:  {rows / med['plain']:8.1f} generations/s")
    if "loop" in med:
        print(f"  one row a call:  {rows / med['loop']:8.1f} generations/s (timed on {loop_rows} rows)")
        print(f"  batching speed-up (batched / one-by-one generations/s): {med['loop'] / med['steered']:.2f}x")
    print(f"  hook overhead (batched steered time / plain generate time): {med['steered'] / med['plain']:.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a local model directory (default: the toy shape, random weights)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a real family's config, random weights")
    parser.add_argument("--layer", type=int, default=None)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch", type=int, nargs="+", default=[256])
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--loop-rows", type=int, default=64, help="rows timed one per call (0: skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_grad_enabled(False)
    if args.model:
        lm, layer = load_lm(args.model, device=device, dtype=args.dtype), 2
    elif args.preset:
        lm, layer = build(args.preset, device, getattr(torch, args.dtype))
    else:
        lm, layer = toy_model(device)
    print(f"{lm.source} ({lm.family}, d_model {lm.d_model}) on {device}, {args.dtype}")
    for batch in args.batch:
        run(lm, args.layer if args.layer is not None else layer, max(args.rows, batch), batch, args.new_tokens,
            args.repeats, args.loop_rows)


if __name__ == "__main__":
    main()
