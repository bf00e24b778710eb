"""SAE training speed: tokens/s and peak memory per architecture, against a dense reference.

Every side runs a full training step: the loss with its auxiliary term, backward, the decoder constraint,
gradient clipping, Adam and the lr schedule. What each step contains:

- ``dense-topk-reference``: TopK in the most direct PyTorch. Dense pre-activations (x - b_dec) W_enc + b_enc,
  ReLU, top-k, dense codes [batch, width], dense decode; AuxK as in ``sae_models``: the top k_aux =
  min(d/2, #dead) dead latents' pre-activations as dense codes, decoded without b_dec against the detached
  residual, divided by the residual's variance, weight 1/32. Autograd backward through everything; the
  decoder-gradient component parallel to each decoder row removed; gradient norm clipped to 1; Adam;
  decoder rows renormalised to unit norm; the dead-latent counters updated. Same lr schedule as ours;
  same initialisation (unit decoder rows, W_enc = W_dec^T), b_dec set to the first batch's mean (untimed).
- ``topk``, ``batchtopk``, ``relu``, ``jumprelu``, ``gated``: the library's own step,
  ``sae_models.sae.train.Trainer._train_step``, inside the body of ``Trainer.run``'s loop (activation
  scale, finiteness check, ``init_from_batch`` on step 0). That step sets the lr (``lr_at``: linear warm-up,
  linear decay to zero from 80% of the steps), takes the dead mask from the trainer's counters, computes
  ``training_loss`` (TopK/BatchTopK: sparse encode/decode of the active latents plus AuxK on the dead ones;
  the others: their penalties, Gated its auxiliary gate reconstruction), backward,
  ``remove_parallel_grads``, ``clip_grad_norm_`` (``grad_clip`` 1.0), Adam (JumpReLU: betas (0, 0.999)),
  ``normalize_decoder``, ``on_step_end`` (BatchTopK: its inference-threshold EMA, a scalar update) and the
  dead-latent counter update; a history row every 40th step (2000 steps / 50 rows, the default schedule's rate).
  ReLU keeps no unit-norm decoder (its penalty is weighted by the decoder norms), so its projection and
  renormalisation are no-ops, exactly as in real training.
- ``sae-lens-topk`` (where sae-lens is installed, the test extra): sae-lens's ``SAETrainer.step``, the
  per-step seam its own ``fit`` loop calls, with ``fit``'s ``maybe_reset_sparsity`` and step counter around
  it: ``TopKTrainingSAE.training_forward_pass`` with the trainer's ``dead_neuron_mask`` (MSE plus sae-lens's
  TopK aux loss: k_aux = min(d/2, #dead), coefficient 1, no variance normalisation), its firing counters and
  activation-frequency scores, backward, ``clip_grad_norm_(1.0)``, Adam, its lr scheduler (the same linear
  warm-up and linear decay) and coefficient schedulers. Decoder normalisation as sae-lens does it for TopK:
  ``rescale_acts_by_decoder_norm=True`` (its default), i.e. pre-activations multiplied by ||d_i|| and codes
  divided by it in decode, every step; sae-lens's trainer neither projects gradients nor renormalises weights.

AuxK has work to do: a latent counts as dead when it has not fired for ``--dead-window`` steps (default 1:
our ``dead_tokens`` = window x batch, sae-lens's ``dead_feature_window`` = window - 1, its test being
strict), and the activations are not isotropic noise (on which every latent fires in every batch) but have
a power-law spectrum like a residual stream's: principal direction i has standard deviation ~ 1/i, in a
random orthonormal basis, scaled to unit mean squared norm. The table reports the mean number of dead
latents per timed step and the mean k_aux (the number of dead latents AuxK decodes per token, capped at
d/2); once every TopK side has at least d/2 dead latents, their AuxK terms do the same amount of work.

Every run uses the same activations, width, k and batch, and runs in its own subprocess so peak memory
(max RSS on the CPU, which includes the imported libraries, e.g. sae-lens's transformer_lens; max allocated
on a GPU) belongs to it alone. Each is timed over ``--steps`` steps after 3 warm-up steps, in ``--repeats``
rounds through all the sides (interleaved, so a shift in the load of a shared machine reaches every side);
the table gives each side's fastest round (and its slowest), and the ratio column is tokens/s against the
reference from the same invocation.

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
AUXK = {"dense-topk-reference", "sae-lens-topk", "topk", "batchtopk"}
WARMUP_STEPS = 3
LR = 3e-4
GRAD_CLIP = 1.0
AUX_K_COEFFICIENT = 1 / 32


def lr_schedule(total: int) -> tuple[int, float]:
    """(warm-up steps, fraction of the steps after which the lr decays to zero), the same on every side."""
    return max(1, total // 5), 0.8


def activations(args, device: str) -> torch.Tensor:
    """[4 x batch, d] rows with a power-law spectrum (std of principal direction i ~ 1/i), unit mean ||x||^2."""
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(args.d, args.d, generator=gen))[0]
    std = 1 / torch.arange(1, args.d + 1, dtype=torch.float32)
    x = (torch.randn(args.batch * 4, args.d, generator=gen) * std) @ basis.T
    return (x / x.pow(2).sum(-1).mean().sqrt()).to(device)


class DenseTopK(torch.nn.Module):
    """The direct way: dense pre-activations, dense codes, dense decode, autograd for everything."""

    def __init__(self, d: int, width: int, k: int):
        super().__init__()
        self.k = k
        w_dec = torch.randn(width, d)
        self.W_dec = torch.nn.Parameter(w_dec / w_dec.norm(dim=-1, keepdim=True))
        self.W_enc = torch.nn.Parameter(self.W_dec.detach().T.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(width))
        self.b_dec = torch.nn.Parameter(torch.zeros(d))

    def loss(self, x: torch.Tensor, dead: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(MSE + AuxK / 32, latents that fired)."""
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        vals, idx = torch.relu(pre).topk(self.k, dim=-1)
        codes = torch.zeros_like(pre).scatter(-1, idx, vals)
        x_hat = codes @ self.W_dec + self.b_dec
        mse = (x_hat - x).pow(2).sum(-1).mean()
        n_dead = int(dead.sum())
        if n_dead:
            k_aux = min(x.shape[-1] // 2, n_dead)
            aux_vals, aux_idx = torch.where(dead, pre, -torch.inf).topk(k_aux, dim=-1)
            aux_codes = torch.zeros_like(pre).scatter(-1, aux_idx, torch.relu(aux_vals))
            residual = (x - x_hat).detach()
            variance = (residual - residual.mean(0)).pow(2).sum(-1).mean().clamp_min(1e-8)
            mse = mse + AUX_K_COEFFICIENT * (residual - aux_codes @ self.W_dec).pow(2).sum(-1).mean() / variance
        return mse, (codes > 0).any(0)


def dense_reference(args, device: str, total: int):
    """The reference's step: loss with AuxK, backward, gradient projection, clipping, Adam, renormalisation."""
    model = DenseTopK(args.d, args.width, args.k).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    since_fired = torch.zeros(args.width, dtype=torch.long, device=device)
    dead_after = args.dead_window * args.batch
    warm, decay_start = lr_schedule(total)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda")
    state = {"step": 0}

    def step(x: torch.Tensor) -> None:
        i = state["step"]
        if i == 0:
            with torch.no_grad():
                model.b_dec.copy_(x.mean(0))
        decay_from = int(decay_start * total)
        decay = 1.0 if i < decay_from else (total - i) / max(1, total - decay_from)
        for group in opt.param_groups:
            group["lr"] = LR * min(1.0, (i + 1) / warm) * decay
        with autocast:
            loss, fired = model.loss(x, since_fired >= dead_after)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            rows = model.W_dec / model.W_dec.norm(dim=-1, keepdim=True)
            model.W_dec.grad -= (model.W_dec.grad * rows).sum(-1, keepdim=True) * rows
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        with torch.no_grad():
            model.W_dec /= model.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        since_fired.add_(x.shape[0])
        since_fired[fired] = 0
        state["step"] += 1

    return step, lambda: since_fired >= dead_after


def library(arch: str, args, device: str, total: int):
    """Our trainer's step, driven the way ``Trainer.run`` drives it."""
    from sae_models.sae import SAEConfig, TrainConfig, build_sae
    from sae_models.sae.train import Trainer, TrainingError

    warm, decay_start = lr_schedule(total)
    cfg = TrainConfig(steps=total, batch_size=args.batch, lr=LR, lr_warmup_steps=warm, decay_start=decay_start,
                      grad_clip=GRAD_CLIP, dead_tokens=args.dead_window * args.batch, log_every=40)
    extra = {k: (args.k if v is None else v) for k, v in ARCHS[arch].items()}
    sae = build_sae(SAEConfig(arch, args.d, args.width, dead_tokens=cfg.dead_tokens, **extra))
    trainer = Trainer(sae, reader=None, cfg=cfg, log=lambda _: None, device=device)
    scale = {}

    def step(batch: torch.Tensor) -> None:
        if trainer.step == 0:  # norm_scale(): unit mean squared norm
            scale["s"] = float(batch.pow(2).sum(-1).mean()) ** -0.5 if cfg.normalize_activations else 1.0
        x = batch * scale["s"]
        if not torch.isfinite(x).all():
            raise TrainingError(f"step {trainer.step}: non-finite activations")
        if trainer.step == 0:
            trainer.sae.init_from_batch(x)
        trainer._train_step(x)
        trainer.step += 1

    return step, lambda: trainer.since_fired >= sae.cfg.dead_tokens


def sae_lens_topk(args, device: str, total: int):
    """sae-lens's TopK training SAE under its own trainer's step."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    warm, decay_start = lr_schedule(total)
    model = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=args.d, d_sae=args.width, k=args.k, device=device))
    cfg = SAETrainerConfig(total_training_samples=total * args.batch, train_batch_size_samples=args.batch,
                           lr=LR, lr_end=LR, lr_scheduler_name="constant", lr_warm_up_steps=warm,
                           lr_decay_steps=total - int(decay_start * total), device=device,
                           autocast=device == "cuda", dead_feature_window=args.dead_window - 1)
    trainer = SAETrainer(cfg=cfg, sae=model, data_provider=iter(()))
    model.to(device)

    def step(batch: torch.Tensor) -> None:  # the body of SAETrainer.fit's loop, logging off
        trainer.maybe_reset_sparsity()
        trainer.step(batch)
        trainer.n_training_steps += 1

    return step, lambda: trainer.dead_neurons


def worker(arch: str, args) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    x = activations(args, device)
    total = WARMUP_STEPS + args.steps
    if arch == "dense-topk-reference":
        step, dead = dense_reference(args, device, total)
    elif arch == "sae-lens-topk":
        step, dead = sae_lens_topk(args, device, total)
    else:
        step, dead = library(arch, args, device, total)
    n_dead = torch.zeros((), dtype=torch.long, device=device)
    k_aux = torch.zeros((), dtype=torch.long, device=device)

    def run(first: int, steps: int, count: bool) -> None:
        for i in range(first, first + steps):
            if count:  # before the step: the mask the step will use (a reduction, no sync)
                dead_now = dead().sum()
                n_dead.add_(dead_now)
                k_aux.add_(dead_now.clamp(max=args.d // 2))
            step(x[(i % 4) * args.batch:(i % 4 + 1) * args.batch])
        if device == "cuda":
            torch.cuda.synchronize()

    run(0, WARMUP_STEPS, False)
    start = time.perf_counter()
    run(WARMUP_STEPS, args.steps, True)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"arch": arch, "tokens_per_s": args.steps * args.batch / seconds, "peak_mb": peak / 2**20,
            "device": device, "dead": n_dead.item() / args.steps,
            "k_aux": k_aux.item() / args.steps if arch in AUXK else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dead-window", type=int, default=1,
                        help="steps a latent must stay silent to count as dead (AuxK)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds through all sides; each side's fastest round is reported")
    parser.add_argument("--worker", choices=sorted(ARCHS))
    args = parser.parse_args()
    if args.dead_window < 1 or args.repeats < 1:
        parser.error("--dead-window and --repeats must be >= 1")
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    runs: dict[str, list[dict]] = {arch: [] for arch in ARCHS}
    for _ in range(args.repeats):  # rounds through every side, so a change in machine load hits them all
        for arch in [a for a in ARCHS if a in runs]:
            cmd = [sys.executable, __file__, "--worker", arch] + [
                f"--{k.replace('_', '-')}={getattr(args, k)}" for k in ("d", "width", "k", "batch", "steps",
                                                                       "dead_window")]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:  # e.g. sae-lens not installed: leave its row out, say why
                print(f"{arch}: skipped ({done.stderr.strip().splitlines()[-1]})")
                del runs[arch]
                continue
            runs[arch].append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows = [max(r, key=lambda row: row["tokens_per_s"]) | {"peak_mb": max(row["peak_mb"] for row in r),
                                                           "slowest": min(row["tokens_per_s"] for row in r)}
            for r in runs.values()]
    ref = rows[0]["tokens_per_s"]
    print(f"d {args.d}, width {args.width} ({args.width // args.d} x d), k {args.k}, batch {args.batch}, "
          f"{args.steps} steps on {rows[0]['device']}; dead = silent for {args.dead_window} step(s), "
          f"k_aux = min(d/2 = {args.d // 2}, dead), both means per timed step; tokens/s: best of "
          f"{args.repeats} interleaved round(s) (slowest alongside), peak MB: the largest")
    print(f"{'architecture':24s} {'tokens/s':>12s} {'vs reference':>13s} {'peak MB':>9s} {'dead':>7s} {'k_aux':>6s} "
          f"{'slowest':>8s}")
    for row in rows:
        k_aux = "-" if row["k_aux"] is None else f"{row['k_aux']:.0f}"
        print(f"{row['arch']:24s} {row['tokens_per_s']:12.0f} {row['tokens_per_s'] / ref:12.2f}x "
              f"{row['peak_mb']:9.0f} {row['dead']:7.0f} {k_aux:>6s} {row['slowest']:8.0f}")
    starved = [r["arch"] for r in rows if r["k_aux"] is not None and r["k_aux"] < args.d // 2]
    if starved:
        print(f"note: fewer than d/2 dead latents on {', '.join(starved)}: AuxK decodes fewer than d/2 latents "
              "per token there (see k_aux), less work than at steady state")


if __name__ == "__main__":
    main()
