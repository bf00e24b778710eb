"""The random-weights control: the twin in the registry, its weights, and the statistics that set its
scores beside the trained model's."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from assets.lakehouse.config import ConfigError, load_settings
from assets.lakehouse.fingerprints import record
from assets.lakehouse.registry import find_variant, partition_grid_note, valid_pairs
from sae_models.evals.control import ControlContrast, ControlSeparation, ranked_separators, separation
from sae_models.stats import mean_difference_ci
from tests.tiny_world import DROP, tiny_toml


def _settings(tmp_path, text: str | None = None):
    path = tmp_path / "lake.toml"
    path.write_text(tiny_toml() if text is None else text)
    return load_settings(path)


def test_a_toy_model_gets_a_twin_by_default_and_control_none_turns_it_off(tmp_path):
    settings = _settings(tmp_path, tiny_toml({"models": {"toy-qwen2": {"control": DROP}}}))
    assert [m.slug for m in settings.registry] == ["toy-gemma2", "toy-qwen2", "toy-gemma2-random", "toy-qwen2-random"]
    twin = settings.model("toy-gemma2-random")
    trained = settings.model("toy-gemma2")
    assert twin.control_of == "toy-gemma2" and twin.twin() is None and twin.in_lake
    assert twin.control_seed == trained.toy.seed  # a toy model's twin: the weights its training started from
    assert twin.model_dump(exclude={"slug", "control", "control_of", "control_seed"}) == trained.model_dump(
        exclude={"slug", "control", "control_of", "control_seed"})
    settings = _settings(tmp_path)  # the tiny config: toy-qwen2 has control = "none"
    assert [m.slug for m in settings.registry] == ["toy-gemma2", "toy-qwen2", "toy-gemma2-random"]


def test_the_twins_get_the_part_of_the_sweep_control_variants_names(tmp_path):
    settings = _settings(tmp_path)
    twin_variants = [v for m, v in valid_pairs(settings) if m == "toy-gemma2-random"]
    assert twin_variants == ["relu-0.1", "topk-k4", "pca"]
    assert len([v for m, v in valid_pairs(settings) if m == "toy-gemma2"]) == 5
    with pytest.raises(KeyError, match=r"'gated-0.1' is not in \[control\] variants"):
        find_variant(settings, "toy-gemma2-random", "gated-0.1")
    assert not settings.patches("toy-gemma2-random", "topk-k4") and settings.patches("toy-gemma2", "topk-k4")


def test_the_ui_is_told_which_partitions_of_the_grid_lake_toml_never_asks_for(tmp_path):
    """Dagster counts the whole (model x variant) grid; the per-SAE assets' description names every gap."""
    note = partition_grid_note(_settings(tmp_path))
    assert note.startswith("Partitions: model x SAE variant, 3 x 5 = 15 in lake.toml's grid, of which it asks for 13.")
    assert "The other 2 are never requested" in note and ": toy-gemma2-random, 2 (2 not in [control]" in note
    assert "toy-gemma2," not in note and "toy-qwen2," not in note
    patching = partition_grid_note(_settings(tmp_path), patched_only=True)  # topk-k4 and pca of the trained two
    assert "asks for 4. The other 11" in patching and "toy-gemma2, 3 (3 not patched" in patching
    assert "toy-gemma2-random, 5 (3 not patched ([patching] variants of trained models only), 2 not in" in patching
    external = tiny_toml({"external_saes": [{"name": "ext", "model": "toy-qwen2", "path": "somewhere"}]})
    note = partition_grid_note(_settings(tmp_path, external))
    assert "3 x 6 = 18" in note and "asks for 14" in note
    assert "toy-gemma2, 1 (1 an external SAE of 'toy-qwen2', not of 'toy-gemma2')" in note


def test_a_twin_setting_reshapes_the_twin_only(tmp_path):
    """The seed and the [control] switch are the twin's: the trained model and its activations keep their
    fingerprints (nothing retrains), the twin's own change with its seed."""
    before = _settings(tmp_path)
    after = _settings(tmp_path, tiny_toml({"models": {"toy-qwen2": {"control": "random-init"},
                                                      "toy-gemma2": {"control_seed": 5}}}))
    for asset in ("language_model", "activations"):
        for slug in ("toy-gemma2", "toy-qwen2"):
            assert record(asset, before, slug)["fingerprint"] == record(asset, after, slug)["fingerprint"]
        assert (record(asset, before, "toy-gemma2-random")["fingerprint"]
                != record(asset, after, "toy-gemma2-random")["fingerprint"])
    # how the trained model trains is not the twin's business (its seed is, through the default control_seed)
    longer = _settings(tmp_path, tiny_toml({"models": {"toy-gemma2": {"toy": {"steps": 30}}}}))
    assert (record("language_model", before, "toy-gemma2-random")["fingerprint"]
            == record("language_model", longer, "toy-gemma2-random")["fingerprint"])
    assert (record("language_model", before, "toy-gemma2")["fingerprint"]
            != record("language_model", longer, "toy-gemma2")["fingerprint"])


QWEN = "toy-qwen2"


@pytest.mark.parametrize(("change", "message"), [
    ({"models": {QWEN: {"slug": "toy-gemma2-random"}}},
     r"model slug 'toy-gemma2-random' is the name of toy-gemma2's control twin"),
    ({"models": {QWEN: {"control": "random"}}}, r"models\[1\]\.control: 'random': Input should be"),
    ({"models": {QWEN: {"control": DROP, "control_of": "toy-gemma2"}}}, r"models\[1\]\.control_of: .*set on the twins"),
    ({"control": {"variants": []}}, r"control: .*variants is empty"),
    ({"control": {"variants": ["tpok-*", "rleu-*"]}},
     r"\[control\] variants \['tpok-\*', 'rleu-\*'\] match no variant of \[sweep\], so the twins"),
])
def test_bad_control_settings_are_one_line_naming_the_field(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, tiny_toml(change))


def test_a_twin_has_its_models_config_and_tokenizer_and_fresh_weights_by_the_family_initialiser(
        tmp_path, random_models):
    from sae_models.lm.control import save_random_twin

    source = random_models["llama"]
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        save_random_twin(str(source), seed, tmp_path / name)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["hidden_size"] == 32
    original, a, b, c = (load_file(str(d / "model.safetensors")) for d in
                         (source, tmp_path / "a", tmp_path / "b", tmp_path / "c"))
    assert a.keys() == original.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the recorded seed reproduces the twin
    projection = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(a[projection], c[projection]) and not torch.equal(a[projection], original[projection])
    # Llama's _init_weights: normal(0, initializer_range) for every linear layer
    std = json.loads((source / "config.json").read_text()).get("initializer_range", 0.02)
    assert float(a[projection].std()) == pytest.approx(std, rel=0.15)

    from sae_models.lm.loading import load_tokenizer

    text = "the chef cooks soup"
    assert load_tokenizer(str(tmp_path / "a")).encode(text) == load_tokenizer(str(source)).encode(text)


def test_a_toy_twin_is_untrained_and_evaluated_like_the_trained_model(tmp_path):
    from sae_models.toyworld import ToyModelConfig, ToyWorld, init_toy_twin

    train, held = ([d.text for d in ToyWorld(seed).documents(n)] for n, seed in ((200, 1), (40, 2)))
    cfg = ToyModelConfig(hidden=32, layers=2, intermediate=64, steps=50)
    report = init_toy_twin(train, held, cfg, seed=0, out_dir=tmp_path / "twin")
    assert report.steps == 0 and report.train_seconds == 0
    # untrained: no better than the unigram model the corpus gives
    assert report.held_out_loss > report.unigram_cross_entropy
    assert (tmp_path / "twin" / "model.safetensors").is_file() and (tmp_path / "twin" / "tokenizer.json").is_file()


def test_mean_difference_interval_covers_the_truth_and_pairs_narrow_it():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 200)
    a, b = base + 0.3 + rng.normal(0, 0.1, 200), base + rng.normal(0, 0.1, 200)
    low, high = mean_difference_ci(a, b, resamples=999)
    paired_low, paired_high = mean_difference_ci(a, b, paired=True, resamples=999)
    assert low < 0.3 < high and paired_low < 0.3 < paired_high
    assert paired_high - paired_low < (high - low) / 5  # the shared part cancels in pairs
    assert mean_difference_ci([1.0], [0.0, 1.0]) == (None, None)
    assert mean_difference_ci([1.0, 1.0], [0.25, 0.25]) == (0.75, 0.75)


def _row(sae, trained, twin, is_baseline=False):
    return ControlContrast("m", "m-random", sae, "topk", is_baseline, 4.0, 1, 4.0, 4.0, "mu", trained, twin,
                           trained - twin, None, None, 10, 10, False)


def test_separation_counts_wins_and_auroc_over_sae_pairs_not_baselines():
    rows = [_row("a", 0.9, 0.5), _row("b", 0.8, 0.6), _row("c", 0.7, 0.65), _row("pca", 0.1, 0.9, True)]
    s = separation("m", "mu", rows, resamples=999)
    assert (s.n_pairs, s.trained_higher, s.twin_higher, s.auroc) == (3, 3, 0, 1.0)
    assert s.difference == pytest.approx(0.65 / 3, abs=1e-9) and s.sign_test_p == pytest.approx(0.25)
    assert s.ci_low is None  # 3 pairs: no interval
    many = separation("m", "mu", [_row(str(i), 0.5 + 0.01 * i, 0.5 - 0.01 * (i % 3)) for i in range(1, 9)], 999)
    assert many.ci_low is not None and many.ci_low <= many.difference <= many.ci_high
    same = separation("m", "mu", [_row(x, 0.5, 0.5) for x in "abc"], resamples=999)
    assert (same.auroc, same.trained_higher, same.difference, same.effect_size) == (0.5, 0, 0.0, None)
    overlap = separation("m", "mu", [_row("a", 0.9, 0.8), _row("b", 0.2, 0.3)], resamples=999)
    assert overlap.auroc == 0.5 and overlap.trained_higher == 1


def _separated(metric, wins, losses, auroc):
    return ControlSeparation("all models", metric, wins + losses, 0.5, 0.5, 0.0, None, None, None, wins, losses,
                             None, auroc)


def test_a_score_the_twins_win_separates_as_well_as_one_the_trained_models_win_and_truth_and_floors_are_apart():
    rows = [_separated("mu", 0, 8, 0.0), _separated("concept_rating", 4, 4, 0.5),
            _separated("mu_simulation", 7, 1, 0.9), _separated("concept_f1", 8, 0, 1.0), _separated("g", 8, 0, 1.0)]
    assert [r.metric for r in ranked_separators(rows)] == ["mu", "mu_simulation", "concept_rating"]


def test_a_toy_twin_is_the_weights_its_model_starts_training_from_and_leaves_the_rng_alone(tmp_path):
    from sae_models.toyworld import ToyModelConfig, ToyWorld, init_toy_twin, train_toy_lm

    train, held = ([d.text for d in ToyWorld(seed).documents(n)] for n, seed in ((60, 1), (10, 2)))
    cfg = ToyModelConfig(hidden=16, layers=1, heads=2, kv_heads=1, intermediate=32, steps=1, lr=1e-30, warmup=0,
                         seed=3)
    state = torch.random.get_rng_state()
    init_toy_twin(train, held, cfg, seed=3, out_dir=tmp_path / "twin")
    assert torch.equal(torch.random.get_rng_state(), state)
    train_toy_lm(train, held, cfg, tmp_path / "trained", log=lambda _: None)  # one step of lr 1e-30
    twin, trained = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("twin", "trained"))
    assert twin.keys() == trained.keys()
    # the step moves the zero-initialised norm weights by ~1e-30 and rounds away on every other weight
    assert all(torch.allclose(twin[k], trained[k], rtol=0, atol=1e-28) for k in twin)
    assert sum(torch.equal(twin[k], trained[k]) for k in twin) >= len(twin) // 2


def test_the_gemma2_twin_gets_gemma2s_own_initialiser(tmp_path, random_models):
    """Gemma-2's _init_weights zeroes its RMSNorm weights (applied as 1 + w), unlike a generic normal init."""
    from sae_models.lm.control import save_random_twin

    save_random_twin(str(random_models["gemma2"]), 4, tmp_path / "twin", dtype="bfloat16")
    weights = load_file(str(tmp_path / "twin" / "model.safetensors"))
    norms = [k for k in weights if k.endswith("norm.weight")]
    assert norms and all(not weights[k].any() for k in norms)
    assert all(w.dtype == torch.bfloat16 for w in weights.values())


def test_a_contrast_row_starts_with_the_keys_of_its_dictionary_pair():
    from dataclasses import fields

    from sae_models.evals.control import PAIR_KEYS, ControlContrast

    assert tuple(f.name for f in fields(ControlContrast))[:len(PAIR_KEYS)] == PAIR_KEYS
