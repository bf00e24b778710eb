"""The paper profiles (profiles/*.toml): each loads, and holds the sweep of Wang et al. 2025 for its model."""

from pathlib import Path

import pytest

from assets.lakehouse.config import load_settings
from assets.lakehouse.registry import valid_pairs, variants_for

PROFILES = Path(__file__).parents[2] / "profiles"
PAPER_MODELS = {"gemma-2-2b": ("google/gemma-2-2b", 12), "qwen-2.5-3b": ("Qwen/Qwen2.5-3B", 17),
                "gemma-2-9b": ("google/gemma-2-9b", 20)}


def test_every_paper_model_has_a_profile():
    assert {p.stem for p in PROFILES.glob("*.toml")} == set(PAPER_MODELS)


@pytest.mark.parametrize("slug", sorted(PAPER_MODELS))
def test_a_paper_profile_holds_the_papers_sweep(slug):
    settings = load_settings(PROFILES / f"{slug}.toml")
    (model,) = settings.registry
    assert (model.slug, model.source, model.layer, model.hook, model.dtype) == (
        slug, *PAPER_MODELS[slug], "resid_post", "bfloat16")
    sweep, train = settings.sweep, settings.sweep.train
    assert sweep.width == 16384 and sorted(sweep.architectures) == ["batchtopk", "gated", "jumprelu", "relu", "topk"]
    assert sweep.target_l0 == [50, 80, 160, 320, 520, 820]
    assert sweep.relu_l1 == [0.012, 0.015, 0.02, 0.03, 0.04, 0.06]
    assert sweep.gated_l1 == [0.012, 0.018, 0.024, 0.04, 0.06, 0.08]
    assert (train.lr, train.lr_warmup_steps, train.sparsity_warmup_steps, train.decay_start, train.batch_size) == (
        3e-4, 1000, 5000, 0.8, 2048)
    assert abs(train.steps * train.batch_size - 5e8) < train.batch_size
    assert sweep.source == "stream" and model.tokens == 10_000_000  # 5e8 streamed; the lake keeps a sample
    assert settings.extraction.context == 2048
    assert (settings.autointerp.n_latents, settings.autointerp.n_concept) == (1000, 100)
    steering = settings.steering
    assert (steering.n_concepts, steering.instructions_per_concept, steering.dev_instructions,
            steering.max_new_tokens) == (100, 10, 5, 128)
    trained = [v for v in variants_for(settings, slug) if not v.is_baseline]
    assert len(trained) == 30 and {m for m, _ in valid_pairs(settings)} == {slug}


@pytest.mark.parametrize("slug", sorted(PAPER_MODELS))
def test_a_paper_profiles_plan_counts_its_sweep(slug):
    """Offline, the plan of a hub model counts what lake.toml decides, and what needs the model's width (bytes and
    parameters) from the profile's d_model; without it, those are unknown rather than guessed."""
    from assets.plan import plan

    settings = load_settings(PROFILES / f"{slug}.toml")
    (planned,) = plan(settings)
    assert planned.saes == {"trained": 30, "baselines": 4}
    assert planned.training_tokens == 30 * 244_141 * 2048 and planned.streamed_tokens == 244_141 * 2048
    assert str(planned.tokens) == "<= 10,000,000"
    assert planned.generations.value == 34 * 100 * 10 * 7 and planned.judge_requests["rate"].value == 3 * 238_000
    d = settings.registry[0].d_model
    assert planned.activation_bytes.value == 10_000_000 * d * 2
    assert planned.buffer_bytes.value == 2 * (81_920 + 16 * 2048) * d * 2  # the buffer and a forward's rows, twice
    passes = settings.sweep.stream.max_saes_per_pass or 30
    assert planned.pass_state_bytes.value >= 16 * passes * 2 * d * 16384  # weights, gradients, Adam's moments
    assert planned.parameters.value > 30 * 2 * d * 16384
    unstated = settings.model_copy(update={"models": [settings.models[0].model_copy(update={"d_model": None})]})
    (blind,) = plan(unstated)
    assert blind.activation_bytes is None and blind.parameters is None and blind.buffer_bytes is None
    assert blind.pass_state_bytes is None


def test_the_plans_judge_estimate_grows_with_the_windows_and_is_priced():
    from assets.plan import judge_cost, plan, request_tokens

    settings = load_settings(PROFILES / "gemma-2-2b.toml")
    wider = settings.model_copy(update={"autointerp": settings.autointerp.model_copy(update={"explain_top": 20})})
    assert request_tokens(wider)["explain"][0] > request_tokens(settings)["explain"][0] > 0
    assert "at most $" in judge_cost(settings, plan(settings)) and "no prices set" not in judge_cost(
        settings, plan(settings))


def test_the_plans_hours_come_from_the_measured_throughputs_it_is_given():
    from assets.plan import hours, plan

    settings = load_settings(PROFILES / "gemma-2-2b.toml")
    assert "none set" in hours(settings, plan(settings))
    rates = settings.plan.model_copy(update={"lm_tokens_per_s": 1e4, "sae_tokens_per_s": 1e5})
    timed = settings.model_copy(update={"plan": rates})
    line = hours(timed, plan(timed))
    # (1e7 sample + 5.0e8 streamed) / 1e4 / 3600; 30 x 244,141 x 2,048 / 1e5 / 3600
    assert "the LM over the activation and streamed tokens 14.2 h" in line and "SAE training 41.7 h" in line
    assert "steered generation" not in line.split("(unset")[0] and "generated_tokens_per_s" in line
