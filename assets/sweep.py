"""The SAE sweep of lake.toml as named variants: ``topk-k8``, ``relu-0.03``, ``jumprelu-t16``, ``pca``...

Variant names are partition keys; each maps to an ``SAEConfig`` once the model's width is known.
"""

from dataclasses import dataclass

from assets.config import Settings, SweepSection

EXTERNAL = "external"


@dataclass(frozen=True)
class Variant:
    name: str
    architecture: str
    level: float | None = None  # k (TopK/BatchTopK), target L0 (JumpReLU), L1 weight (ReLU/Gated/tied)
    path: str | None = None  # external SAEs: their SAELens directory
    model: str | None = None  # external SAEs: the one model they belong to

    @property
    def is_external(self) -> bool:
        return self.architecture == EXTERNAL

    @property
    def is_baseline(self) -> bool:
        return self.level is None and not self.is_external

    @property
    def target_l0(self) -> float | None:
        return self.level if self.architecture in ("topk", "batchtopk", "jumprelu") else None


def _fmt(value: float) -> str:
    return f"{value:g}"


def sweep_variants(sweep: SweepSection) -> list[Variant]:
    out: list[Variant] = []
    for arch in sweep.architectures:
        if arch in ("topk", "batchtopk"):
            out += [Variant(f"{arch}-k{k}", arch, k) for k in sweep.target_l0]
        elif arch == "jumprelu":
            out += [Variant(f"jumprelu-t{t}", arch, t) for t in sweep.target_l0]
        else:
            grid = {"relu": sweep.relu_l1, "gated": sweep.gated_l1, "tied": sweep.tied_l1}[arch]
            out += [Variant(f"{arch}-{_fmt(c)}", arch, c) for c in grid]
    return out + [Variant(name, name) for name in sweep.baselines]


def all_variants(settings: Settings) -> list[Variant]:
    """The sweep's variants, then the registered external SAEs."""
    external = [Variant(e.name, EXTERNAL, path=e.path, model=e.model) for e in settings.external_saes]
    return sweep_variants(settings.sweep) + external


def variants_for(settings: Settings, model: str) -> list[Variant]:
    return [v for v in all_variants(settings) if v.model in (None, model)]


def find_variant(settings: Settings, name: str) -> Variant:
    for v in all_variants(settings):
        if v.name == name:
            return v
    raise KeyError(f"SAE variant {name!r} is not in lake.toml's [sweep] or [[external_saes]] (removed?)")


def sae_config(variant: Variant, d_model: int, sweep: SweepSection, metadata: dict):
    from sae_models.sae import SAEConfig

    if variant.is_baseline:
        return SAEConfig(variant.architecture, d_model, 2 * d_model, metadata=metadata)
    level = variant.level
    common = dict(d_in=d_model, d_sae=sweep.width_multiple * d_model, metadata=metadata,
                  dead_tokens=sweep.train.dead_tokens, threshold_ema_start=sweep.train.threshold_ema_start)
    if variant.architecture in ("topk", "batchtopk"):
        return SAEConfig(variant.architecture, k=int(level), **common)
    if variant.architecture == "jumprelu":
        return SAEConfig("jumprelu", target_l0=level, sparsity_coefficient=sweep.jumprelu_sparsity,
                         jumprelu_bandwidth=sweep.jumprelu_bandwidth,
                         jumprelu_init_threshold=sweep.jumprelu_init_threshold, **common)
    return SAEConfig(variant.architecture, sparsity_coefficient=level, **common)


def train_config(sweep: SweepSection, device: str):
    from sae_models.sae.train import TrainConfig

    t = sweep.train
    return TrainConfig(steps=t.steps, batch_size=t.batch_size, lr=t.lr, lr_warmup_steps=t.lr_warmup_steps,
                       decay_start=t.decay_start, sparsity_warmup_steps=t.sparsity_warmup_steps, seed=t.seed,
                       normalize_activations=t.normalize_activations, checkpoint_every=t.checkpoint_every,
                       log_every=max(1, t.steps // 50), device=device)
