"""SAE training speed: tokens/s per architecture against a dense TopK reference and against sae-lens.

Every side runs a full training step on the same activations, width, target L0 and batch: the loss with its
auxiliary term, backward, the decoder constraint, gradient clipping, Adam and the lr schedule.

- ``dense-topk`` (the reference): TopK in the most direct PyTorch. Dense pre-activations
  (x - b_dec) W_enc + b_enc, ReLU, top-k, dense codes [batch, width], dense decode; AuxK as in ``sae_models``
  (the top k_aux = min(d/2, #dead) dead latents' pre-activations as dense codes, decoded without b_dec
  against the detached residual, divided by the residual's variance, weight 1/32). Autograd backward through
  everything; the decoder-gradient component parallel to each decoder row removed; gradient norm clipped to
  1; Adam; decoder rows renormalised; the dead-latent counters updated. Same lr schedule and initialisation
  as ours; b_dec set to the first batch's mean (untimed).
- ``topk``, ``batchtopk``, ``relu``, ``jumprelu``, ``gated``: the library's own step,
  ``sae_models.sae.train.Trainer._train_step``, inside the body of ``Trainer.run``'s loop (activation scale,
  finiteness check, ``init_from_batch`` on step 0): lr schedule, ``training_loss`` (TopK/BatchTopK: sparse
  encode/decode of the active latents plus AuxK; ReLU, JumpReLU, Gated: their penalties, Gated its auxiliary
  gate reconstruction, on the active pairs once their measured density is under ``sparse_below``), backward,
  ``remove_parallel_grads``, ``clip_grad_norm_`` (1.0), Adam (JumpReLU: betas (0, 0.999)),
  ``normalize_decoder``, ``on_step_end`` and the dead-latent counters; a history row every 40th step.
- ``sae-lens-*`` (where sae-lens is installed, the test extra): sae-lens's training SAE of the same
  architecture (``TopKTrainingSAE``, ``BatchTopKTrainingSAE``, ``StandardTrainingSAE`` for ReLU,
  ``JumpReLUTrainingSAE`` with its quadratic L0 loss at the same target, ``GatedTrainingSAE``) under
  ``SAETrainer.step``, the per-step seam its own ``fit`` loop calls, with ``fit``'s ``maybe_reset_sparsity``
  and step counter around it: its forward pass and losses (TopK/BatchTopK: its AuxK, k_aux = min(d/2, #dead),
  coefficient 1), firing counters, backward, ``clip_grad_norm_(1.0)``, Adam, its lr and coefficient
  schedulers, with its default settings. (Its TopK option ``use_sparse_activations``, which it advises for
  float32 without autocast, fails in backward on the CPU with this torch: ``aten::view`` on SparseCPU.)

The penalised architectures reach their L0 by training, which a benchmark cannot wait for at these shapes:
before timing (untimed) each of them, ours and sae-lens's, has its per-latent thresholds (ReLU's b_enc,
JumpReLU's theta, Gated's b_gate) set so that every latent fires on a fraction L0 / width of the activations,
i.e. every side's per-step throughput is measured at that L0 (not over a run from initialisation, whose early,
dense steps these figures leave out). The table reports the mean L0 of each side's training codes over its
timed steps, and how many of our timed steps took the sparse path.

AuxK has work to do: a latent counts as dead when it has not fired for ``--dead-window`` steps (default 1),
and the activations have a power-law spectrum like a residual stream's (principal direction i has standard
deviation ~ 1/i, in a random orthonormal basis, unit mean squared norm).

Every run is its own subprocess (so its memory is its own: "+MB" is the growth of max RSS once the imports
and the activations are in, or max allocated on a GPU) and is timed over ``--steps`` steps after 3 warm-up
steps, in ``--repeats`` rounds through all the sides (interleaved, so a shift in a shared machine's load reaches
every side). tokens/s is a side's median over the rounds; the ratios are paired by round (the side against the
reference, or against sae-lens, measured in the same round), their median and their smallest.

    python bench/train.py          # CPU: d 256 / width 4096 and d 768 / width 16384, L0 32 and 128
    python bench/train.py --shapes 2304x16384 --l0 64 --batch 4096 --peak-tflops 989   # paper scale on a GPU (bf16)
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

OURS = ("topk", "batchtopk", "relu", "jumprelu", "gated")
REFERENCE = "dense-topk"
SAE_LENS = {f"sae-lens-{arch}": arch for arch in OURS}
SIDES = (REFERENCE, *OURS, *SAE_LENS)
PENALISED = ("relu", "jumprelu", "gated")
WARMUP_STEPS = 3
# The step's compute does not depend on the lr's value, but its state does: at the paper's 3e-4 Adam's first
# steps (unit-size updates on every weight) move the penalised SAEs' L0 from its target by 2-40x within the
# timed steps. A tiny lr keeps every side where it started, at its target L0, for the whole measurement.
LR = 1e-6
GRAD_CLIP = 1.0
AUX_K_COEFFICIENT = 1 / 32
L1 = 0.04  # ReLU and Gated: a mid-sweep L1 weight; the thresholds, not the weight, set the L0 here
PAPER_TOKENS = 5e8  # per SAE, [W25]
PAPER_SAES = 30  # per model: 5 architectures x 6 sparsities


def lr_schedule(total: int) -> tuple[int, float]:
    """(warm-up steps, fraction of the steps after which the lr decays to zero), the same on every side."""
    return max(1, total // 5), 0.8


def activations(d: int, rows: int, device: str) -> torch.Tensor:
    """[rows, d] with a power-law spectrum (std of principal direction i ~ 1/i), unit mean ||x||^2."""
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(d, d, generator=gen))[0]
    std = 1 / torch.arange(1, d + 1, dtype=torch.float32)
    x = (torch.randn(rows, d, generator=gen) * std) @ basis.T
    return (x / x.pow(2).sum(-1).mean().sqrt()).to(device)


@torch.no_grad()
def firing_cut(x: torch.Tensor, b_dec: torch.Tensor, w_enc: torch.Tensor, l0: int) -> torch.Tensor:
    """Per latent, the projection (x - b_dec) W_enc that a fraction l0 / width of the rows of ``x`` exceed."""
    proj = (x.float() - b_dec.float()) @ w_enc.float()
    above = max(1, round(x.shape[0] * l0 / w_enc.shape[1]))
    return proj.kthvalue(x.shape[0] - above, dim=0).values.to(w_enc.dtype)


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


class Side:
    """One side's training step, driven by the worker: ``step(batch)``, and what the table reports."""

    def step(self, batch: torch.Tensor) -> float:
        """One training step; returns the L0 of its training codes (mean active latents per token)."""
        raise NotImplementedError

    def dead(self) -> torch.Tensor:
        raise NotImplementedError

    sparse_steps = None  # ours (penalised): timed steps that took the sparse path


class Reference(Side):
    """The reference's step: loss with AuxK, backward, gradient projection, clipping, Adam, renormalisation."""

    def __init__(self, args, x: torch.Tensor, total: int):
        self.model = DenseTopK(args.d, args.width, args.l0).to(x.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, foreach=True)  # as ours
        self.since_fired = torch.zeros(args.width, dtype=torch.long, device=x.device)
        self.dead_after, self.total, self.i, self.k = args.dead_window * args.batch, total, 0, args.l0
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=x.device.type == "cuda")

    def step(self, x: torch.Tensor) -> float:
        model = self.model
        if self.i == 0:
            with torch.no_grad():
                model.b_dec.copy_(x.mean(0))
        warm, decay_start = lr_schedule(self.total)
        decay_from = int(decay_start * self.total)
        decay = 1.0 if self.i < decay_from else (self.total - self.i) / max(1, self.total - decay_from)
        for group in self.opt.param_groups:
            group["lr"] = LR * min(1.0, (self.i + 1) / warm) * decay
        with self.autocast:
            loss, fired = model.loss(x, self.dead())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            rows = model.W_dec / model.W_dec.norm(dim=-1, keepdim=True)
            model.W_dec.grad -= (model.W_dec.grad * rows).sum(-1, keepdim=True) * rows
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        self.opt.step()
        with torch.no_grad():
            model.W_dec /= model.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        self.since_fired.add_(x.shape[0])
        self.since_fired[fired] = 0
        self.i += 1
        return float(self.k)

    def dead(self) -> torch.Tensor:
        return self.since_fired >= self.dead_after


class Ours(Side):
    """Our trainer's step, driven the way ``train_saes`` drives it."""

    def __init__(self, arch: str, args, x: torch.Tensor, total: int):
        from sae_models.sae import SAEConfig, TrainConfig, build_sae
        from sae_models.sae.train import Trainer

        warm, decay_start = lr_schedule(total)
        cfg = TrainConfig(steps=total, batch_size=args.batch, lr=LR, lr_warmup_steps=warm,
                          decay_start=decay_start, grad_clip=GRAD_CLIP, dead_tokens=args.dead_window * args.batch,
                          log_every=40)
        extra = {"topk": dict(k=args.l0), "batchtopk": dict(k=args.l0), "relu": dict(sparsity_coefficient=L1),
                 "gated": dict(sparsity_coefficient=L1),
                 "jumprelu": dict(target_l0=args.l0, sparsity_coefficient=1.0)}[arch]
        sae = build_sae(SAEConfig(arch, args.d, args.width, dead_tokens=cfg.dead_tokens, **extra))
        self.trainer = Trainer(sae, cfg=cfg, log=lambda _: None, device=x.device.type)
        self.scale = float(x.pow(2).sum(-1).mean()) ** -0.5  # norm_scale(): unit mean squared norm
        self.sparse_steps = 0
        if arch in PENALISED:  # (scaled as the trainer scales them)
            sae.set_firing_cut(firing_cut(x * self.scale, sae.b_dec, sae.W_enc, args.l0))

    def step(self, batch: torch.Tensor) -> float:
        from sae_models.sae.train import TrainingError

        trainer = self.trainer
        x = batch * self.scale
        if not torch.isfinite(x).all():
            raise TrainingError(f"step {trainer.step}: non-finite activations")
        if trainer.step == 0:
            trainer.sae.init_from_batch(x)
        loss = trainer._train_step(x)
        self.sparse_steps += loss.sparse
        trainer.step += 1
        return loss.l0

    def dead(self) -> torch.Tensor:
        return self.trainer.since_fired >= self.trainer.sae.cfg.dead_tokens



class SaeLens(Side):
    """sae-lens's training SAE of the architecture under its own trainer's step."""

    def __init__(self, arch: str, args, x: torch.Tensor, total: int):
        import sae_lens
        from sae_lens.config import SAETrainerConfig
        from sae_lens.training.sae_trainer import SAETrainer

        device = x.device.type
        common = dict(d_in=args.d, d_sae=args.width, device=device)
        model = {
            "topk": lambda: sae_lens.TopKTrainingSAE(sae_lens.TopKTrainingSAEConfig(k=args.l0, **common)),
            "batchtopk": lambda: sae_lens.BatchTopKTrainingSAE(
                sae_lens.BatchTopKTrainingSAEConfig(k=args.l0, **common)),
            "relu": lambda: sae_lens.StandardTrainingSAE(
                sae_lens.StandardTrainingSAEConfig(l1_coefficient=L1, **common)),
            "jumprelu": lambda: sae_lens.JumpReLUTrainingSAE(sae_lens.JumpReLUTrainingSAEConfig(
                jumprelu_sparsity_loss_mode="quadratic", target_l0=args.l0, l0_coefficient=1.0, **common)),
            "gated": lambda: sae_lens.GatedTrainingSAE(sae_lens.GatedTrainingSAEConfig(l1_coefficient=L1, **common)),
        }[arch]()
        warm, decay_start = lr_schedule(total)
        cfg = SAETrainerConfig(total_training_samples=total * args.batch, train_batch_size_samples=args.batch,
                               lr=LR, lr_end=LR, lr_scheduler_name="constant", lr_warm_up_steps=warm,
                               lr_decay_steps=total - int(decay_start * total), device=device,
                               autocast=device == "cuda", dead_feature_window=args.dead_window - 1)
        self.trainer = SAETrainer(cfg=cfg, sae=model, data_provider=iter(()))
        self.model = model.to(device)
        if arch in PENALISED:
            self._start_at_l0(arch, x, args.l0)

    @torch.no_grad()
    def _start_at_l0(self, arch: str, x: torch.Tensor, l0: int) -> None:
        model = self.model
        cut = firing_cut(x, model.b_dec, model.W_enc, l0)
        if arch == "relu":
            model.b_enc.copy_(-cut)
        elif arch == "jumprelu":
            model.threshold.copy_(cut.clamp_min(1e-6))
        else:
            model.b_gate.copy_(-cut)

    def step(self, batch: torch.Tensor) -> float:  # the body of SAETrainer.fit's loop, logging off
        self.trainer.maybe_reset_sparsity()
        codes = self.trainer.step(batch).feature_acts
        self.trainer.n_training_steps += 1
        return (codes != 0).sum().item() / batch.shape[0]

    def dead(self) -> torch.Tensor:
        return self.trainer.dead_neurons



def build_side(side: str, args, x: torch.Tensor, total: int) -> Side:
    if side == REFERENCE:
        return Reference(args, x, total)
    if side in SAE_LENS:
        return SaeLens(SAE_LENS[side], args, x, total)
    return Ours(side, args, x, total)


def worker(side: str, args) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    x = activations(args.d, args.batch * 4, device)
    total = WARMUP_STEPS + args.steps
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # imports and data: not the side's
    runner = build_side(side, args, x, total)
    n_dead = torch.zeros((), dtype=torch.long, device=device)
    l0s = []

    def run(first: int, steps: int, count: bool) -> None:
        for i in range(first, first + steps):
            if count:  # before the step: the mask the step will use (a reduction, no sync)
                n_dead.add_(runner.dead().sum())
            l0s.append(runner.step(x[(i % 4) * args.batch:(i % 4 + 1) * args.batch]))
        if device == "cuda":
            torch.cuda.synchronize()

    run(0, WARMUP_STEPS, False)
    sparse_before = runner.sparse_steps
    start = time.perf_counter()
    run(WARMUP_STEPS, args.steps, True)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
    sparse = None if runner.sparse_steps is None or side not in PENALISED else runner.sparse_steps - sparse_before
    return {"side": side, "tokens_per_s": args.steps * args.batch / seconds, "peak_mb": peak / 2**20,
            "device": device, "dead": n_dead.item() / args.steps, "l0": sum(l0s[WARMUP_STEPS:]) / args.steps,
            "sparse_steps": sparse}


def run_block(args, d: int, width: int, l0: int) -> dict[str, list[dict]]:
    """Every side at one shape and L0, in interleaved rounds: side -> its rounds."""
    runs: dict[str, list[dict]] = {side: [] for side in SIDES if side == REFERENCE or side in args.sides}
    for _ in range(args.repeats):
        for side in list(runs):
            cmd = [sys.executable, __file__, "--worker", side, f"--d={d}", f"--width={width}", f"--l0={l0}",
                   f"--batch={args.batch}", f"--steps={args.steps}", f"--dead-window={args.dead_window}"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:  # e.g. sae-lens not installed: leave its row out, say why
                print(f"{side}: skipped ({done.stderr.strip().splitlines()[-1]})", flush=True)
                del runs[side]
                continue
            runs[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return runs


def paired(runs: dict[str, list[dict]], side: str, against: str) -> list[float]:
    """The side's tokens/s over ``against``'s, round by round (the same machine load on both)."""
    return [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(runs[side], runs[against], strict=True)]


def print_block(runs: dict[str, list[dict]], args, d: int, width: int, l0: int) -> None:
    print(f"\nd {d}, width {width}, L0 {l0}, batch {args.batch}, {args.steps} timed steps on "
          f"{runs[REFERENCE][0]['device']}, {args.repeats} interleaved rounds: medians over the rounds; ratios "
          f"paired by round (median, and the smallest)")
    print(f"{'side':20s} {'tokens/s':>10s} {'vs dense':>9s} {'(min)':>7s} {'vs sae-lens':>12s} {'(min)':>7s} "
          f"{'L0':>6s} {'sparse':>7s} {'dead':>6s} {'+MB':>6s} {'h / 5e8 tok':>12s}", end="")
    print(f" {'enc MFU':>8s}" if args.peak_tflops else "")
    rates = {}
    for side, rounds in runs.items():
        rate = rates[side] = statistics.median(r["tokens_per_s"] for r in rounds)
        dense = paired(runs, side, REFERENCE)
        lens = paired(runs, side, f"sae-lens-{side}") if f"sae-lens-{side}" in runs else None
        vs_lens = f"{statistics.median(lens):11.2f}x {min(lens):6.2f}x" if lens else f"{'-':>12s} {'-':>7s}"
        sparse = rounds[0]["sparse_steps"]
        sparse = "-" if sparse is None else f"{min(r['sparse_steps'] for r in rounds)}/{args.steps}"
        print(f"{side:20s} {rate:10.0f} {statistics.median(dense):8.2f}x {min(dense):6.2f}x {vs_lens} "
              f"{statistics.median(r['l0'] for r in rounds):6.1f} {sparse:>7s} {rounds[0]['dead']:6.0f} "
              f"{max(r['peak_mb'] for r in rounds):6.0f} {PAPER_TOKENS / rate / 3600:12.2f}", end="")
        # the one dense matmul every architecture does: the encoder's forward, 2 d width FLOPs per token
        print(f" {rate * 2 * d * width / (args.peak_tflops * 1e12):8.1%}" if args.peak_tflops else "")
    ours = [rates[a] for a in OURS if a in rates]
    hours = PAPER_SAES * PAPER_TOKENS * sum(1 / rate for rate in ours) / len(ours) / 3600
    print(f"the paper's sweep at these per-step rates ({PAPER_SAES} SAEs x {PAPER_TOKENS:.0e} tokens, as many of "
          f"each architecture): {hours:,.0f} device-hours of training")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["256x4096", "768x16384"], help="d x width")
    parser.add_argument("--l0", nargs="+", type=int, default=[32, 128], help="target L0 (TopK's k)")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES),
                        help=f"which sides to run ({REFERENCE} always runs: the ratios need it)")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dead-window", type=int, default=1,
                        help="steps a latent must stay silent to count as dead (AuxK)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds through all sides (medians and paired ratios over them)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak FLOP/s in TFLOP/s (e.g. 989 for an H100's bf16): adds the "
                             "encoder matmul's share of it")
    parser.add_argument("--worker", choices=SIDES)
    parser.add_argument("--d", type=int)
    parser.add_argument("--width", type=int)
    args = parser.parse_args()
    if args.dead_window < 1 or args.repeats < 1 or args.steps < 1:
        parser.error("--dead-window, --repeats and --steps must be >= 1")
    if args.worker:
        args.l0 = args.l0[0]
        print(json.dumps(worker(args.worker, args)))
        return
    for shape in args.shapes:
        try:
            d, width = (int(v) for v in shape.lower().split("x"))
        except ValueError:
            parser.error(f"--shapes {shape!r}: expected d x width, e.g. 768x16384")
        for l0 in args.l0:
            if not 0 < l0 < width:
                parser.error(f"--l0 {l0}: must be in 1..width-1 ({width})")
            print_block(run_block(args, d, width, l0), args, d, width, l0)


if __name__ == "__main__":
    main()
