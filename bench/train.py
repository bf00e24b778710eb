"""SAE training speed: tokens/s and peak memory per architecture, against a dense reference.

The reference is a TopK SAE written in the most direct PyTorch (dense codes, dense decode, autograd);
sae-lens's TopK training SAE runs too where sae-lens is installed (the test extra).
Every run uses the same random activations, width, k and batch, and runs in its own subprocess so peak
memory (max RSS on the CPU, max allocated on a GPU) belongs to it alone. Each is timed over ``--steps``
steps after a warm-up; the ratio column is tokens/s against the reference from the same invocation.

    python bench/train.py                          # CPU: d 256, width 16 x d, k 32, batch 1024
    python bench/train.py --d 2304 --width 16384 --k 64 --batch 4096   # paper scale, on a GPU (bf16)
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

ARCHS = {
    "dense-topk-reference": {},
    "sae-lens-topk": {},
    "topk": dict(k=None),
    "batchtopk": dict(k=None),
    "relu": dict(sparsity_coefficient=0.04),
    "jumprelu": dict(target_l0=None, sparsity_coefficient=1.0),
    "gated": dict(sparsity_coefficient=0.04),
}


class DenseTopK(torch.nn.Module):
    """The direct way: dense pre-activations, dense codes, dense decode, autograd for everything."""

    def __init__(self, d: int, width: int, k: int):
        super().__init__()
        self.k = k
        self.W_enc = torch.nn.Parameter(torch.randn(d, width) / d**0.5)
        self.W_dec = torch.nn.Parameter(torch.randn(width, d) / d**0.5)
        self.b_enc = torch.nn.Parameter(torch.zeros(width))
        self.b_dec = torch.nn.Parameter(torch.zeros(d))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        acts = torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        vals, idx = acts.topk(self.k, dim=-1)
        codes = torch.zeros_like(acts).scatter(-1, idx, vals)
        return (codes @ self.W_dec + self.b_dec - x).pow(2).sum(-1).mean()


def sae_lens_topk(args, device: str):
    """sae-lens's own TopK training SAE and its training forward pass (loss incl. its AuxK)."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    model = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=args.d, d_sae=args.width, k=args.k, device=device))

    def step_loss(batch):
        step = TrainStepInput(sae_in=batch, coefficients={}, dead_neuron_mask=None, n_training_steps=0,
                              is_logging_step=False)
        return model.training_forward_pass(step).loss

    return model, step_loss


def worker(arch: str, args) -> dict:
    from sae_models.sae import SAEConfig, build_sae

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    x = torch.randn(args.batch * 4, args.d, device=device)
    if arch == "dense-topk-reference":
        model = DenseTopK(args.d, args.width, args.k).to(device)

        def step_loss(batch):
            return model.loss(batch)
    elif arch == "sae-lens-topk":
        model, step_loss = sae_lens_topk(args, device)
    else:
        extra = {k: (args.k if v is None else v) for k, v in ARCHS[arch].items()}
        model = build_sae(SAEConfig(arch, args.d, args.width, **extra)).to(device)

        def step_loss(batch):
            return model.training_loss(batch, 1.0, None).total
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")

    def run(steps: int) -> None:
        for i in range(steps):
            batch = x[(i % 4) * args.batch:(i % 4 + 1) * args.batch]
            with autocast:
                loss = step_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    run(3)
    start = time.perf_counter()
    run(args.steps)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"arch": arch, "tokens_per_s": args.steps * args.batch / seconds, "peak_mb": peak / 2**20,
            "device": device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--worker", choices=sorted(ARCHS))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    rows = []
    for arch in ARCHS:
        cmd = [sys.executable, __file__, "--worker", arch] + [f"--{k}={getattr(args, k)}"
                                                             for k in ("d", "width", "k", "batch", "steps")]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:  # e.g. sae-lens not installed: leave its row out, say why
            print(f"{arch}: skipped ({done.stderr.strip().splitlines()[-1]})")
            continue
        rows.append(json.loads(done.stdout))
    ref = rows[0]["tokens_per_s"]
    print(f"d {args.d}, width {args.width} ({args.width // args.d} x d), k {args.k}, batch {args.batch}, "
          f"{args.steps} steps on {rows[0]['device']}")
    print(f"{'architecture':24s} {'tokens/s':>12s} {'vs reference':>13s} {'peak MB':>9s}")
    for row in rows:
        print(f"{row['arch']:24s} {row['tokens_per_s']:12.0f} {row['tokens_per_s'] / ref:12.2f}x "
              f"{row['peak_mb']:9.0f}")


if __name__ == "__main__":
    main()
