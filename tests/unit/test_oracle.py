"""Oracle dictionaries: one latent per known concept from labelled activations, and corrupted copies whose
encoder and decoder directions are replaced together."""

import numpy as np
import pytest
import torch

from assets.lakehouse.config import ConfigError, load_settings
from assets.lakehouse.registry import find_variant, variants_for
from sae_models.sae import load_sae, save_sae
from sae_models.sae.oracle import OracleLabelError, corrupted_latents, fit_oracle
from sae_models.sae.sweep import oracle_variants
from tests.tiny_world import tiny_toml

D, N, CONCEPTS = 48, 6000, ["topic:a", "topic:b", "role:c", "role:d"]


def _planted(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Activations in which each concept adds its own planted direction, on the tokens that carry it."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.standard_normal((D, len(CONCEPTS))))[0].T  # orthonormal rows
    labels = rng.random((N, len(CONCEPTS))) < [0.1, 0.05, 0.2, 0.3]
    x = rng.standard_normal((N, D)) + 4.0 * labels.astype(float) @ directions + 1.5
    return torch.from_numpy(x).float(), torch.from_numpy(labels), directions


@torch.no_grad()
def _codes(sae, x: torch.Tensor) -> np.ndarray:
    return sae.encode(x).numpy()


def _unit(rows: torch.Tensor) -> np.ndarray:
    rows = rows.detach().double().numpy()
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def test_a_clean_oracle_fires_on_its_concepts_and_decodes_their_directions():
    x, labels, directions = _planted()
    oracle = fit_oracle(x, labels, CONCEPTS, metadata={"hook_name": "blocks.1.hook_resid_post"})
    fires = _codes(oracle, x) > 0
    y = labels.numpy()
    f1 = 2 * (fires & y).sum(0) / (fires.sum(0) + y.sum(0))
    assert f1.min() > 0.9
    assert np.abs(np.sum(_unit(oracle.W_dec) * directions, axis=1)).min() > 0.95
    assert oracle.cfg.metadata["concepts"] == CONCEPTS and oracle.cfg.d_sae == len(CONCEPTS)
    # decoding a latent's largest code gives back its class-mean difference
    codes = _codes(oracle, x)
    for j in range(len(CONCEPTS)):
        diff = x.numpy()[y[:, j]].mean(0) - x.numpy()[~y[:, j]].mean(0)
        assert codes[:, j].max() * oracle.W_dec[j].norm().item() == pytest.approx(np.linalg.norm(diff), rel=1e-4)


@pytest.mark.parametrize("level", [0.25, 0.5, 1.0])
def test_corruption_replaces_both_directions_of_exactly_its_share_of_latents(level):
    x, labels, _ = _planted()
    clean = fit_oracle(x, labels, CONCEPTS)
    bad = fit_oracle(x, labels, CONCEPTS, corruption=level, seed=2)
    enc_cos = np.sum(_unit(clean.W_enc.T) * _unit(bad.W_enc.T), axis=1)
    dec_cos = np.sum(_unit(clean.W_dec) * _unit(bad.W_dec), axis=1)
    hit = enc_cos < 1 - 1e-6
    assert hit.sum() == round(level * len(CONCEPTS))
    assert np.flatnonzero(hit).tolist() == corrupted_latents(len(CONCEPTS), level, 2).tolist()  # named as drawn
    assert np.array_equal(hit, dec_cos < 1 - 1e-6)  # never one direction without the other
    assert np.abs(enc_cos[hit]).max() < 0.6 and np.abs(dec_cos[hit]).max() < 0.6
    # a corrupted latent reads and writes one random direction, keeps its norms and fires as often as before
    assert np.allclose(np.abs(np.sum(_unit(bad.W_enc.T[hit]) * _unit(bad.W_dec[hit]), axis=1)), 1.0)
    assert np.allclose(bad.W_enc.detach().norm(dim=0), clean.W_enc.detach().norm(dim=0), rtol=1e-5)
    assert np.allclose((_codes(bad, x) > 0).mean(0), (_codes(clean, x) > 0).mean(0), atol=2e-3)
    assert torch.equal(bad.W_dec[~torch.from_numpy(hit)], clean.W_dec[~torch.from_numpy(hit)])
    other = fit_oracle(x, labels, CONCEPTS, corruption=level, seed=3)  # another seed, other random directions
    assert not torch.equal(other.W_dec, bad.W_dec)


def test_an_oracle_saves_and_loads_with_the_same_codes(tmp_path):
    x, labels, _ = _planted()
    oracle = fit_oracle(x, labels, CONCEPTS, corruption=0.5, seed=1)
    save_sae(oracle, tmp_path)
    loaded = load_sae(tmp_path)
    assert loaded.architecture == "oracle" and loaded.cfg.metadata["corruption"] == 0.5
    assert np.array_equal(_codes(loaded, x), _codes(oracle, x))


def test_a_concept_without_tokens_gets_no_latent_and_is_named():
    x, labels, _ = _planted()
    labels[:, 2] = False
    oracle = fit_oracle(x, labels, CONCEPTS)
    assert oracle.cfg.metadata["concepts"] == ["topic:a", "topic:b", "role:d"] and oracle.cfg.d_sae == 3
    assert oracle.cfg.metadata["left_out"] == ["role:c"]
    with pytest.raises(OracleLabelError, match="no direction separates any"):
        fit_oracle(x, torch.zeros_like(labels), CONCEPTS)
    with pytest.raises(OracleLabelError, match="do not match"):
        fit_oracle(x, labels[:, :3], CONCEPTS)


def test_oracle_variants_are_named_by_level_and_seed_for_trained_models_only(tmp_path):
    path = tmp_path / "lake.toml"
    path.write_text(tiny_toml({"oracle": {"levels": [0, 0.25, 1], "seeds": [0, 2]}}))
    settings = load_settings(path)
    names = [v.name for v in oracle_variants(settings.oracle)]
    assert names == ["oracle-0-s0", "oracle-0-s2", "oracle-0.25-s0", "oracle-0.25-s2", "oracle-1-s0", "oracle-1-s2"]
    assert {v.name for v in variants_for(settings, "toy-gemma2") if v.is_oracle} == set(names)
    assert not [v for v in variants_for(settings, "toy-gemma2-random") if v.is_oracle]
    assert find_variant(settings, "toy-qwen2", "oracle-0.25-s2").is_baseline
    assert settings.oracle_notice() is None


def test_an_oracle_asked_of_a_corpus_without_labels_is_one_line_and_the_rest_runs(tmp_path):
    corpus = tmp_path / "docs.txt"
    corpus.write_text("the cat sat on the mat\n" * 20)
    path = tmp_path / "lake.toml"
    path.write_text(tiny_toml({"corpus": {"source": str(corpus)}, "oracle": {"levels": [0]}}))
    settings = load_settings(path)
    notice = settings.oracle_notice()
    assert "\n" not in notice and "[oracle]" in notice and "toy-gemma2" in notice and "no ground-truth labels" in notice
    assert not [v for v in variants_for(settings, "toy-gemma2") if v.is_oracle]
    assert [v.name for v in variants_for(settings, "toy-gemma2")][:2] == ["relu-0.1", "topk-k4"]
    with pytest.raises(KeyError, match=r"\[oracle\]"):
        find_variant(settings, "toy-gemma2", "oracle-0-s0")


def test_an_oracle_level_outside_0_1_is_one_config_line(tmp_path):
    path = tmp_path / "lake.toml"
    path.write_text(tiny_toml({"oracle": {"levels": [0, 1.5]}}))
    with pytest.raises(ConfigError, match=r"oracle\.levels: .*\[1\.5\] are not fractions") as err:
        load_settings(path)
    assert "\n" not in str(err.value)
