import json

from sae_models.lm import load_lm


def test_a_short_training_already_learns_the_world_and_reloads(trained_toy_lm):
    report = json.loads((trained_toy_lm / "toyworld_report.json").read_text())
    assert report["held_out_loss"] < 0.75 * report["unigram_cross_entropy"]
    assert report["topic_consistency"] > 2 / 16  # chance is 1/16 (16 topics); blends cap it well below 1
    assert report["ioi_accuracy"] > 0.9  # chance is 1/20
    lm = load_lm(str(trained_toy_lm))
    assert (lm.family, lm.n_layers, lm.d_model) == ("gemma2", 2, 32)
