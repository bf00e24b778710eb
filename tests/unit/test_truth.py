"""Toy-world concept recovery: F1 with fires = code > 0, and swept over thresholds and signs."""

import pyarrow as pa
import pytest
import torch

from sae_models.toyworld.truth import (
    CONCEPT_RECOVERY_SCHEMA,
    HeldOutCodes,
    concept_f1,
    concept_f1_swept,
    concept_recovery,
)


def _labels(n: int = 1000, seed: int = 0) -> torch.Tensor:
    """[n, 3] bool: two concepts on ~10% and ~30% of tokens, and one concept absent."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(n, generator=gen)
    return torch.stack([u < 0.1, (u > 0.5) & (u < 0.8), torch.zeros(n, dtype=torch.bool)], dim=1)


def test_a_dense_shifted_copy_of_a_concept_fails_code_above_zero_but_is_found_by_the_sweep():
    labels = _labels()
    y = labels[:, 0].float()
    noise = torch.rand(len(y), generator=torch.Generator().manual_seed(1))
    codes = torch.stack([y + 0.5, noise], dim=1)  # latent 0: the indicator shifted, never 0
    f1, _ = concept_f1(codes > 0, labels)
    assert f1[0] < 0.25  # fires everywhere: F1 = 2p / (1 + p) at base rate p ~ 0.1
    swept = concept_f1_swept(codes, labels)
    assert swept.f1[0] == pytest.approx(1.0)
    # 1.5 at its max: 0.5 x 1.5 = 0.75 is the first fraction that separates 1.5 from 0.5
    assert (swept.latent[0], swept.threshold[0], swept.sign[0]) == (0, pytest.approx(0.5), 1)


def test_a_concept_on_the_negative_side_of_a_signed_code_is_found_with_sign_minus_one():
    labels = _labels()
    codes = (0.5 - 2 * labels[:, 1].float())[:, None]  # -1.5 on the concept's tokens, 0.5 elsewhere
    swept = concept_f1_swept(codes, labels)
    assert swept.f1[1] == pytest.approx(1.0)
    assert (swept.latent[1], swept.threshold[1], swept.sign[1]) == (0, 0.0, -1)


def test_a_sparse_code_keeps_its_f1_and_threshold_zero_and_an_absent_concept_has_no_latent():
    labels = _labels()
    codes = torch.cat([torch.zeros(len(labels), 1), labels[:, :2].float() * 3.0], dim=1)
    f1, latent = concept_f1(codes > 0, labels)
    swept = concept_f1_swept(codes, labels)
    assert swept.f1[:2].tolist() == pytest.approx(f1[:2].tolist()) == [1.0, 1.0]
    assert swept.latent[:2].tolist() == latent[:2].tolist() == [1, 2]
    assert swept.threshold[:2].tolist() == [0.0, 0.0] and swept.sign[:2].tolist() == [1, 1]
    assert (swept.f1[2], swept.latent[2], swept.sign[2]) == (0.0, -1, 0) and latent[2] == -1


def test_the_swept_f1_is_never_below_the_plain_one():
    labels = _labels(2000, seed=3)
    gen = torch.Generator().manual_seed(4)
    codes = torch.relu(torch.randn(2000, 16, generator=gen) + labels[:, :1].float() * 0.7)
    f1, _ = concept_f1(codes > 0, labels)
    swept = concept_f1_swept(codes, labels)
    assert (swept.f1 >= f1).all() and swept.f1[0] > f1[0]


def test_concept_recovery_table_has_the_declared_columns():
    labels = _labels()
    codes = torch.stack([labels[:, 0].float() + 0.5, -labels[:, 1].float()], dim=1)
    held = HeldOutCodes(codes, torch.zeros(len(labels), dtype=torch.long), labels,
                        ["topic:food", "sentiment:positive", "role:agent"])
    table = concept_recovery(held)
    assert table.schema == CONCEPT_RECOVERY_SCHEMA
    assert table.column("kind").to_pylist() == ["topic", "sentiment", "role"]
    rows = table.to_pylist()
    assert rows[0]["best_f1"] < 0.25 and rows[0]["best_f1_swept"] == pytest.approx(1.0)
    assert (rows[0]["swept_latent"], rows[0]["swept_sign"]) == (0, 1)
    assert rows[1]["best_f1"] < 0.5 and rows[1]["best_f1_swept"] == pytest.approx(1.0)  # latent 0 fires everywhere
    assert (rows[1]["swept_latent"], rows[1]["swept_sign"]) == (1, -1)
    assert rows[2]["swept_latent"] == -1 and rows[2]["best_latent"] == -1
    assert pa.types.is_int8(table.schema.field("swept_sign").type)
