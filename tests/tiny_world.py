"""The tiny two-model toy world the tests materialize, as data: a test says what it changes
(``tiny_toml({"sweep": {"architectures": ["topk"]}})``) and gets valid lake.toml text back, instead of editing
the text and hoping the edit matched."""

import tomllib
from collections.abc import Mapping, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import tomli_w

DROP = object()  # a change's value that removes the key

TINY: dict[str, Any] = {
    # One intra-op thread per test process: `make test` runs two processes on two cores.
    "reproducibility": {"threads": 1},
    "lake": {"root": "lake"},
    "corpus": {"source": "toyworld", "lm_train_docs": 300, "lm_eval_docs": 40, "activation_docs": 120},
    "extraction": {"batch_size": 16, "context": 64, "row_group_mb": 0.01},
    "sweep": {
        "architectures": ["relu", "topk", "gated"], "width_multiple": 4, "target_l0": [4], "relu_l1": [0.1],
        "gated_l1": [0.1], "baselines": ["pca", "neuron"], "baseline_fit_tokens": 500, "metric_docs": 8,
        "min_explained_variance": 0.6,
        "train": {"steps": 80, "batch_size": 128, "lr": 0.005, "lr_warmup_steps": 5, "sparsity_warmup_steps": 20,
                  "checkpoint_every": 10},
    },
    "autointerp": {"n_latents": 24, "n_concept": 6, "half_window": 3, "n_top": 5, "n_importance": 2, "n_random": 4,
                   "explain_top": 4, "explain_importance": 1, "score_top": 1, "score_importance": 1,
                   "score_random": 4, "sim_explain_top": 3, "sim_top": 2, "sim_random": 2},
    "steering": {"n_concepts": 3, "factors": [0.5, 2.0], "instructions_per_concept": 4, "dev_instructions": 2,
                 "max_new_tokens": 8, "batch_size": 32},
    # the tiny models do not solve IOI; the refusal is tested on its own
    "patching": {"variants": ["topk-*", "pca"], "n_pairs": 2, "n_eval_pairs": 4, "thresholds": [0.05, 0.5, 5.0],
                 "min_ioi_accuracy": 0.0},
    "control": {"variants": ["topk-*", "relu-*", "pca"]},
    "models": [
        {"slug": "toy-gemma2", "source": "toyworld", "layer": 1, "tokens": 1500,
         "toy": {"family": "gemma2", "hidden": 32, "layers": 2, "intermediate": 64, "steps": 15}},
        {"slug": "toy-qwen2", "source": "toyworld", "layer": 1, "hook": "mlp_out", "tokens": 1500, "control": "none",
         "toy": {"family": "qwen2", "hidden": 32, "layers": 2, "intermediate": 64, "steps": 15}},
    ],
}


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged table by table: a table merges key by key, ``DROP`` removes a key, any
    other value (a list too) replaces; a new key or table is added (a misspelt one then fails ``load_settings`` as an
    unknown key). ``models`` is changed by slug: ``{"models": {"toy-qwen2": {...}}}`` merges into that model, a
    new slug appends a model, ``DROP`` removes one."""
    out = deepcopy(dict(base))
    for key, value in changes.items():
        if value is DROP:
            del out[key]  # a KeyError when there is nothing to drop: the change names what it meant
        elif key == "models" and isinstance(value, Mapping):
            out[key] = _merged_models(out.get(key, []), value)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = deepcopy(value)
    return out


def _merged_models(models: Sequence[Mapping[str, Any]], changes: Mapping[str, Any]) -> list[dict[str, Any]]:
    by_slug = {m["slug"]: dict(m) for m in models}
    for slug, change in changes.items():
        if change is DROP:
            by_slug.pop(slug)
        else:
            by_slug[slug] = merged(by_slug.get(slug, {"slug": slug}), change)
    return list(by_slug.values())


def tiny_world(*changes: Mapping[str, Any], models: Sequence[str] | None = None, twins: bool = True
               ) -> dict[str, Any]:
    """The tiny world's settings: only the toy ``models`` named (all by default); with ``twins=False`` no
    random-weights twin (by default toy-gemma2 has one, toy-qwen2 not); then each of ``changes`` merged, in
    order."""
    world = deepcopy(TINY)
    if models is not None:
        world["models"] = [m for m in world["models"] if m["slug"] in models]
    if not twins:
        world["models"] = [{**m, "control": "none"} for m in world["models"]]
    for change in changes:
        world = merged(world, change)
    return world


def tiny_toml(*changes: Mapping[str, Any], models: Sequence[str] | None = None, twins: bool = True) -> str:
    """``tiny_world(...)`` as lake.toml text."""
    return tomli_w.dumps(tiny_world(*changes, models=models, twins=twins))


def one_model_toml(*changes: Mapping[str, Any]) -> str:
    """The smallest lake with every evaluation: toy-gemma2 without a twin, one TopK SAE, no baselines; then
    ``changes`` merged."""
    one = {"sweep": {"architectures": ["topk"], "baselines": []}}
    return tiny_toml(one, *changes, models=["toy-gemma2"], twins=False)


def edit_toml(path: Path, changes: Mapping[str, Any]) -> None:
    """Merge ``changes`` into the lake.toml at ``path``, as ``merged`` does."""
    path.write_text(tomli_w.dumps(merged(tomllib.loads(path.read_text()), changes)))
