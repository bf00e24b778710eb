"""Extraction speed: tokens/s, and ratios against a bare forward pass up to layer L and a full forward pass.

All three are measured in the same run on the same batches, interleaved over several rounds (medians),
so the ratios hold on a noisy shared machine. Models are randomly initialised from a real family's
config (no weights are needed to time them); the text is toy-world text through the toy tokenizer.

    python bench/extract.py                       # CPU-sized Gemma-2 config
    python bench/extract.py --preset gemma-2-2b   # the real Gemma-2-2B config (a GPU wants this)
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, Gemma2Config, Qwen2Config

from sae_models.activation_store import write_shards
from sae_models.lm import ExtractionConfig, LoadedLM, iter_activations
from sae_models.lm.hooks import decoder_layers
from sae_models.lm.loading import load_tokenizer
from sae_models.toyworld import ToyWorld, save_tokenizer

PRESETS = {
    # name: (config class, kwargs, layer)
    "small-gemma2": (Gemma2Config, dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=8,
                                        num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                                        vocab_size=256000), 4),
    "small-qwen2": (Qwen2Config, dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=8,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=151936), 4),
    "gemma-2-2b": (Gemma2Config, dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
                                      num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                                      vocab_size=256000), 12),
}


def build(preset: str, device: str, dtype: torch.dtype) -> tuple[LoadedLM, int]:
    cls, kwargs, layer = PRESETS[preset]
    tok_dir = Path(tempfile.mkdtemp()) / "tok"
    save_tokenizer(tok_dir)
    tok = load_tokenizer(str(tok_dir))
    config = cls(**kwargs, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=dtype)
    model.to(device).eval().requires_grad_(False)
    return LoadedLM(model, tok, preset, config.model_type, config.num_hidden_layers, config.hidden_size), layer


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small-gemma2")
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    lm, layer = build(args.preset, device, dtype)
    world = ToyWorld(0)
    # long documents (several stories joined) so every batch is near the context length
    docs = [(i, " ".join(world.story().text for _ in range(4))) for i in range(args.docs)]
    cfg = ExtractionConfig(batch_size=args.batch, context=args.context)
    encoded = [lm.tokenizer([t for _, t in docs[i:i + args.batch]], return_tensors="pt", padding=True,
                            truncation=True, max_length=args.context).to(device)
               for i in range(0, len(docs), args.batch)]
    tokens = sum(int(e["attention_mask"].sum()) for e in encoded)

    base = lm.model.model
    full_layers = base.layers

    def forward_to_layer():
        base.layers = torch.nn.ModuleList(list(full_layers)[: layer + 1])
        try:
            with torch.inference_mode():
                for e in encoded:
                    base(input_ids=e["input_ids"], attention_mask=e["attention_mask"], use_cache=False)
        finally:
            base.layers = full_layers

    def full_forward():
        with torch.inference_mode():
            for e in encoded:
                lm.model(input_ids=e["input_ids"], attention_mask=e["attention_mask"], use_cache=False)

    def extraction():
        for _ in iter_activations(lm, docs, cfg, layer=layer):
            pass

    def extraction_to_parquet():
        with tempfile.TemporaryDirectory() as out:
            write_shards(iter_activations(lm, docs, cfg, layer=layer), Path(out), lm.d_model, "float16")

    assert len(decoder_layers(lm.model)) == lm.n_layers
    runs = {"forward_to_L": forward_to_layer, "full_forward": full_forward,
            "extraction": extraction, "extraction+parquet": extraction_to_parquet}
    extraction()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"preset {args.preset} on {device} ({dtype}), layer {layer}/{lm.n_layers}, d_model {lm.d_model}, "
          f"{tokens} tokens in {len(encoded)} batches of {args.batch} x <= {args.context}, {args.rounds} rounds")
    for name, t in med.items():
        print(f"  {name:20s} {t * 1e3:9.1f} ms  {tokens / t:12.0f} tok/s")
    print(f"  extraction / forward_to_L          = {med['extraction'] / med['forward_to_L']:.3f}  (goal <= 1.15)")
    print(f"  extraction+parquet / forward_to_L  = {med['extraction+parquet'] / med['forward_to_L']:.3f}")
    print(f"  extraction / full_forward          = {med['extraction'] / med['full_forward']:.3f}")


if __name__ == "__main__":
    main()
