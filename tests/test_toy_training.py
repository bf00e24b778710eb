from sae_models.lm import load_lm
from sae_models.toyworld import ToyModelConfig, ToyWorld, train_toy_lm


def test_a_short_training_already_beats_the_unigram_baseline_and_reloads(tmp_path):
    docs = ToyWorld(0).documents(1500)
    train, held_out = [d.text for d in docs[:1400]], [d.text for d in docs[1400:]]
    cfg = ToyModelConfig(family="qwen2", hidden=32, layers=2, intermediate=64, steps=500, batch=32, context=64)
    report = train_toy_lm(train, held_out, cfg, tmp_path, log=lambda _: None)
    assert report.held_out_loss < 0.75 * report.unigram_cross_entropy
    assert report.topic_consistency > 0.5  # chance is 1/16
    lm = load_lm(str(tmp_path))
    assert (lm.family, lm.n_layers, lm.d_model) == ("qwen2", 2, 32)
    assert (tmp_path / "toyworld_report.json").is_file()
