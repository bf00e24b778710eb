"""Truth on the toy world: steering an SAE latent whose autointerp explanation names a topic raises that
topic's share of the generated words as the factor grows. The whole path is the real one: activations of a
trained toy LM, a TopK SAE trained on them, SAEBench-style explanations from the toy judge, steered
generation through the intervention module."""

import numpy as np
import pytest
import torch

from sae_models.activation_store import ActivationReader, write_shards
from sae_models.evals.autointerp import TokenText, score_latents, too_few_activations
from sae_models.evals.config import AutointerpConfig, SteeringConfig
from sae_models.evals.examples import from_arrow, gather_sae_examples, to_arrow
from sae_models.evals.instructions import toyworld_instructions
from sae_models.evals.steering import concept_magnitudes, generate_steering, plan_steering
from sae_models.judges import Judge
from sae_models.judges.toyworld import ToyworldBackend
from sae_models.lm import load_lm
from sae_models.lm.config import ExtractionConfig
from sae_models.lm.extract import iter_activations
from sae_models.lm.generate import row_seed
from sae_models.sae import SAEConfig, build_sae
from sae_models.sae.train import TrainConfig, train_sae
from sae_models.toyworld import ToyWorld
from sae_models.toyworld.grammar import TOPICS

FACTORS = (1.0, 3.0, 5.0)
TOPIC_CONCEPT = r"^concept (\w+) such as"


@pytest.fixture(scope="module")
def steered(trained_toy_lm, tmp_path_factory):
    """Topic-word share of the generations per factor (0 = unsteered), for every latent explained as a
    topic."""
    import re

    lm = load_lm(str(trained_toy_lm))
    docs = list(enumerate(d.text for d in ToyWorld(7).documents(800)))
    acts = tmp_path_factory.mktemp("acts")
    batches = iter_activations(lm, docs, ExtractionConfig(batch_size=64, context=64, act_dtype="float32"), layer=1)
    write_shards(batches, acts, lm.d_model, "float32", row_group_mb=0.5)
    reader = ActivationReader(acts)
    torch.manual_seed(0)
    sae = build_sae(SAEConfig("topk", lm.d_model, 8 * lm.d_model, k=4))
    train_sae(sae, reader, TrainConfig(steps=300, batch_size=256, lr=2e-3, lr_warmup_steps=20,
                                       sparsity_warmup_steps=0, dead_tokens=5000), log=lambda _: None)
    cfg = AutointerpConfig(half_window=6)
    examples = gather_sae_examples(sae, reader.rows(("doc_id", "pos", "token_id")), np.arange(sae.cfg.d_sae), cfg)
    subset = from_arrow(to_arrow(examples, keep=~too_few_activations(examples, cfg)), cfg)
    rows = score_latents(subset, TokenText(lm.tokenizer), Judge(ToyworldBackend()), cfg)
    topic_of = {r.latent: m.group(1) for r in rows if (m := re.match(TOPIC_CONCEPT, r.explanation))
                and m.group(1) in TOPICS}
    latents = sorted(topic_of)
    max_code = {int(f): float(examples.top.score[i, 0]) for i, f in enumerate(examples.latents)}
    concepts = concept_magnitudes(sae, latents, [max_code[f] for f in latents])
    steer = SteeringConfig(factors=FACTORS, instructions_per_concept=10, dev_instructions=5, max_new_tokens=20,
                           batch_size=512)
    plan = plan_steering(concepts, toyworld_instructions(), steer, lambda *key: row_seed("truth", *key))
    generations = generate_steering(lm, sae, concepts, plan, 1, "resid_post", steer)
    words = {t: {t, *(w for pos in v.values() for w in pos)} for t, v in TOPICS.items()}
    share: dict[float, list[float]] = {}
    for g in generations:
        tokens = g.generation.split()
        share.setdefault(g.factor, []).append(sum(w in words[topic_of[g.latent]] for w in tokens) / max(len(tokens), 1))
    return {f: float(np.mean(v)) for f, v in share.items()}, len(latents)


def test_steering_a_topic_latent_raises_its_topic_as_the_factor_grows(steered):
    """Bar: over the topic-explained latents, the named topic's word share rises from the unsteered share at
    every step 0 -> 1 -> 3 -> 5 x m_f, and by at least 0.1 at 5 x m_f."""
    share, n = steered
    assert n >= 3, f"only {n} latents explained as a topic"
    curve = [share[f] for f in (0.0, *FACTORS)]
    assert all(b > a for a, b in zip(curve, curve[1:], strict=False)), curve
    assert curve[-1] >= curve[0] + 0.1, curve
