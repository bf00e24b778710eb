"""Batched steered generation: a row's sample does not depend on its batch, steering reaches the prompt and
every generated token, on four families."""

import pytest
import torch

from sae_models.lm import hook_module, load_lm
from sae_models.lm.generate import counter_uniform, generate_batch, row_seed
from sae_models.lm.intervene import add_vectors

PROMPTS = ["question : tell me about food . answer :", "the farmer", "when alice and bob went to the market ,",
           "question : tell me about space . answer :", "a lovely puppy chased"]


def test_counter_noise_is_a_function_of_seed_step_and_token_only():
    seeds = torch.tensor([row_seed("a", 1), row_seed("b", 2), 7])
    u = counter_uniform(seeds, step=3, n=1000)
    assert torch.equal(u[1:], counter_uniform(seeds[1:], 3, 1000))  # another batch: same rows, same noise
    assert torch.equal(u[[2, 0]], counter_uniform(seeds[[2, 0]], 3, 1000))
    assert not torch.equal(u, counter_uniform(seeds, 4, 1000))  # the next step draws anew
    assert u.min() > 0 and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.02
    # uniform: the deciles of 3,000 draws hold 300 each, give or take sampling noise
    counts = torch.histc(u.flatten(), bins=10, min=0, max=1)
    assert counts.min() > 240 and counts.max() < 360


def test_gumbel_max_samples_from_the_softmax():
    """argmax(logits + Gumbel(noise)) over many seeds lands on each token as often as softmax says."""
    from sae_models.lm.generate import RowSampler

    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1, 1e-9]]))
    seeds = list(range(4000))
    sampler = RowSampler(seeds, temperature=1.0, prompt_width=0, device=torch.device("cpu"))
    picks = sampler(torch.zeros(len(seeds), 0), logits.expand(len(seeds), -1)).argmax(-1)
    freq = torch.bincount(picks, minlength=4).float() / len(seeds)
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1, 0.0]), atol=0.03)


def _generate(lm, prompts, seeds, batch_size, vectors=None, temperature=1.0):
    module = hook_module(lm.model, 1, "resid_post")
    out = []
    for i in range(0, len(prompts), batch_size):
        edit = add_vectors(vectors[i:i + batch_size]) if vectors is not None else None
        out += generate_batch(lm, prompts[i:i + batch_size], seeds[i:i + batch_size], 12, temperature, module, edit)
    return out


def test_a_rows_generation_is_the_same_at_any_batch_size_and_row_order(trained_toy_lm):
    lm = load_lm(str(trained_toy_lm))
    prompts = PROMPTS * 2
    seeds = [row_seed("toy", i) for i in range(len(prompts))]
    vectors = torch.randn(len(prompts), lm.d_model, generator=torch.Generator().manual_seed(1))
    one_batch = _generate(lm, prompts, seeds, 10, vectors)
    assert _generate(lm, prompts, seeds, 3, vectors) == one_batch
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(2)).tolist()
    shuffled = _generate(lm, [prompts[i] for i in order], [seeds[i] for i in order], 4, vectors[order])
    assert shuffled == [one_batch[i] for i in order]
    # the same prompt with other seeds samples other text (the streams differ), and it is real sampling
    assert len({g.text for g in _generate(lm, [PROMPTS[0]] * 6, list(range(6)), 6)}) > 1


def test_greedy_ignores_the_seed(trained_toy_lm):
    lm = load_lm(str(trained_toy_lm))
    texts = {g.text for g in _generate(lm, [PROMPTS[0]] * 4, list(range(4)), 4, temperature=0)}
    assert len(texts) == 1


@pytest.mark.parametrize("family", ["gemma2", "qwen2", "llama", "gpt2"])
def test_steering_acts_on_prompt_and_generated_tokens_in_every_family(random_models, family):
    """A batched, left-padded, KV-cached steered generation equals each row generated alone, and a large
    steering vector changes what is generated (it reaches the generated positions, not only the prompt)."""
    lm = load_lm(str(random_models[family]))
    seeds = [row_seed(family, i) for i in range(len(PROMPTS))]
    vectors = torch.zeros(len(PROMPTS), lm.d_model)
    vectors[::2] = 30 * torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0))
    batched = _generate(lm, PROMPTS, seeds, len(PROMPTS), vectors, temperature=0)
    alone = _generate(lm, PROMPTS, seeds, 1, vectors, temperature=0)
    assert batched == alone
    plain = _generate(lm, PROMPTS, seeds, len(PROMPTS), temperature=0)
    assert all(batched[i] == plain[i] for i in (1, 3))  # zero vectors: untouched
    assert all(batched[i] != plain[i] for i in (0, 2, 4))


def test_steering_adds_the_vector_at_every_prompt_and_generated_position(random_models):
    """Every forward step of a KV-cached generation (the prompt, then one new token at a time) gets the
    vector added at all its positions: AxBench's convention, not only the prompt."""
    lm = load_lm(str(random_models["qwen2"]))
    vectors = torch.randn(2, lm.d_model, generator=torch.Generator().manual_seed(3))
    steer, steps = add_vectors(vectors), []

    def recorded(hidden):
        out = steer(hidden)
        steps.append((hidden.shape[1], out - hidden))
        return out

    generate_batch(lm, PROMPTS[:2], [0, 1], 6, 1.0, hook_module(lm.model, 1, "resid_post"), recorded)
    assert [n for n, _ in steps] == [steps[0][0]] + [1] * 5  # the prompt, then 5 cached steps
    for _, delta in steps:
        assert torch.allclose(delta, vectors[:, None, :].expand_as(delta), atol=1e-6)


def test_the_sampler_draws_new_noise_at_every_generated_token():
    """The step is the number of tokens generated so far, read from the sequence length: the same prompt
    width at a longer sequence gives other noise (a sampler stuck at one step would repeat its choice)."""
    from sae_models.lm.generate import RowSampler

    sampler = RowSampler([11, 12], temperature=1.0, prompt_width=5, device=torch.device("cpu"))
    scores = torch.zeros(2, 50)
    first, second = sampler(torch.zeros(2, 5), scores), sampler(torch.zeros(2, 6), scores)
    assert not torch.equal(first, second)
    assert torch.equal(first, RowSampler([11, 12], 1.0, 9, torch.device("cpu"))(torch.zeros(2, 9), scores))
