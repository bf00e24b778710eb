"""``sae-lake plan``: what lake.toml asks for, before anything runs.

Per model (its random-weights twin included): the activation documents and tokens, the bytes the activation
table stores, the SAEs trained, fitted or imported and their parameters, the tokens the SAEs train on (from a
stream: the tokens of the LM's one pass and the size of its mixing buffer), the latents
autointerp scores, the generations steering makes, and the judge requests both send. A count is exact where
lake.toml decides it (the toy world's corpus is generated here and tokenized as extraction tokenizes it); it is an
upper bound, written "<= n", where the data decide: a file corpus's length, a trained SAE's dead latents (never
scored), an external SAE's width, an explanation the judge did not give (its detection and steering never asked).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assets.lakehouse.config import ModelEntry, Settings
from assets.lakehouse.registry import variants_for
from sae_models.judges.prompts import RATINGS

AUTOINTERP_REQUESTS = {"explain": 2, "detect": 1, "simulate": 1}  # per scored latent: detection's and simulation's
#                                                                   explanations are written apart
STEERING_REQUESTS = len(RATINGS)  # per generation: concept, instruction and fluency ratings
ACT_BYTES = {"float16": 2, "float32": 4}
CHARS_PER_TOKEN = 4  # the usual rule of thumb for English under a BPE tokenizer
WORD = " tok"  # a stand-in for one window token in the estimate's prompts: 4 characters, one token


@dataclass(frozen=True)
class Count:
    """A planned quantity: exact, or an upper bound."""

    value: int
    exact: bool = True

    def __add__(self, other: Count) -> Count:
        return Count(self.value + other.value, self.exact and other.exact)

    def __mul__(self, factor: int) -> Count:
        return Count(self.value * factor, self.exact)

    def __str__(self) -> str:
        return f"{self.value:,}" if self.exact else f"<= {self.value:,}"


@dataclass
class ModelPlan:
    """What lake.toml asks of one model."""

    model: str
    documents: Count
    tokens: Count
    activation_bytes: Count | None  # None: the model's width is not known without loading it
    saes: dict[str, int] = field(default_factory=dict)  # trained, baselines, oracles, external
    parameters: Count | None = Count(0)  # None: a dictionary's size is not known without loading something
    training_tokens: int = 0  # tokens the SAEs train on, summed over them
    streamed_tokens: int = 0  # under [sweep] source = "stream": tokens the LM runs for the one pass of all of them
    buffer_bytes: Count | None = Count(0)  # ... its mixing buffer at its fullest
    pass_state_bytes: Count | None = Count(0)  # ... and its SAEs' training state, all in memory at once
    scored_latents: Count = Count(0)
    generations: Count = Count(0)
    new_tokens: Count = Count(0)
    judge_requests: dict[str, Count] = field(default_factory=dict)


def plan(settings: Settings) -> list[ModelPlan]:
    """The plan of every model of the registry, twins included, in registry order."""
    documents, tokens = _activation_documents(settings)
    return [_model_plan(settings, entry, documents, tokens(entry)) for entry in settings.registry]


def _activation_documents(settings: Settings):
    """The activation documents (a count) and, per model, the tokens extraction keeps from them."""
    corpus, context = settings.corpus, settings.extraction.context
    if corpus.source != "toyworld":
        docs = Count(corpus.activation_docs, exact=False)
        return docs, lambda entry: Count(entry.tokens, exact=False)
    import warnings

    from sae_models.toyworld.tokenizer import build_tokenizer

    with warnings.catch_warnings():  # the world's module loads Dagster's definitions, whose beta notices say nothing
        warnings.simplefilter("ignore")  # about a plan
        from assets.defs.world.corpus import toyworld_corpus

    texts = [r["text"] for r in toyworld_corpus(corpus).to_pylist() if r["split"] == "activation"]
    tokenizer = build_tokenizer()
    tokenizer.enable_truncation(context)
    special = {tokenizer.token_to_id(t) for t in ("<bos>", "<eos>", "<pad>")}
    kept = sum(sum(i not in special for i in e.ids) for e in tokenizer.encode_batch(texts))
    exact = settings.extraction.drop_outlier_norm <= 0  # dropped outliers are known only once extracted
    return Count(len(texts)), lambda entry: Count(min(entry.tokens, kept), exact)


def _d_model(entry: ModelEntry) -> int | None:
    if entry.toy is not None:
        return entry.toy.hidden
    if entry.d_model is not None:  # stated in lake.toml (checked when the model loads)
        return entry.d_model
    from sae_models.lm.loading import ModelLoadError, d_model_of, load_config

    try:
        return d_model_of(load_config(entry.source, entry.revision, entry.trust_remote_code))
    except (ModelLoadError, OSError, ValueError):
        return None


def _model_plan(settings: Settings, entry: ModelEntry, documents: Count, tokens: Count) -> ModelPlan:
    d_model = _d_model(entry)
    out = ModelPlan(entry.slug, documents, tokens,
                    tokens * d_model * ACT_BYTES[settings.extraction.act_dtype] if d_model else None)
    auto, steer, sweep = settings.autointerp, settings.steering, settings.sweep
    trained_sizes: list[Count | None] = []
    for variant in variants_for(settings, entry.slug):
        kind = ("oracles" if variant.is_oracle else "external" if variant.is_external
                else "baselines" if variant.is_baseline else "trained")
        out.saes[kind] = out.saes.get(kind, 0) + 1
        width = _width(settings, variant, d_model)
        size = _parameters(settings, variant, d_model, width)
        out.parameters = None if size is None or out.parameters is None else out.parameters + size
        if kind == "trained":
            out.training_tokens += sweep.train.steps * sweep.train.batch_size
            trained_sizes.append(size)
            if sweep.source == "stream":  # one LM pass feeds them all, through one buffer
                out.streamed_tokens = sweep.train.steps * sweep.train.batch_size
                out.buffer_bytes = _buffer_bytes(settings, d_model)
        scored = Count(min(auto.n_latents, width.value), exact=False)  # a latent too rarely active is not scored
        steered = Count(min(steer.n_concepts, auto.n_concept, scored.value), scored.exact)
        generations = steered * (steer.instructions_per_concept * (1 + len(steer.factors)))
        out.scored_latents += scored
        out.generations += generations
        out.new_tokens += Count(generations.value * steer.max_new_tokens, exact=False)
        for task, per_latent in AUTOINTERP_REQUESTS.items():
            out.judge_requests[task] = out.judge_requests.get(task, Count(0)) + Count(scored.value * per_latent,
                                                                                      exact=False)
        out.judge_requests["rate"] = out.judge_requests.get("rate", Count(0)) + Count(
            generations.value * STEERING_REQUESTS, exact=False)
    if sweep.source == "stream" and trained_sizes:
        out.pass_state_bytes = _pass_state(trained_sizes, sweep.stream.max_saes_per_pass)
    return out


def _buffer_bytes(settings: Settings, d_model: int | None) -> Count | None:
    """The mixing buffer at its fullest: its rows and one forward pass's, concatenated once more to shuffle."""
    if d_model is None:
        return None
    stream = settings.sweep.stream
    rows = stream.buffer_tokens + stream.docs_per_forward * settings.extraction.context
    return Count(2 * rows * d_model * ACT_BYTES[settings.extraction.act_dtype], exact=False)


def _pass_state(sizes: list[Count | None], cap: int | None) -> Count | None:
    """The training state of one streamed pass: each SAE's parameters, gradients and Adam's two moments in float32
    (16 bytes a parameter), for the largest SAEs a pass holds at once."""
    if any(size is None for size in sizes):
        return None
    largest = sorted((size.value for size in sizes), reverse=True)[:cap or len(sizes)]
    return Count(16 * sum(largest), exact=cap is None or cap >= len(sizes))


def _width(settings: Settings, variant, d_model: int | None) -> Count:
    """The dictionary's latents: an oracle's one per ground-truth concept, a baseline's or a trained SAE's what the
    sweep builds; an external SAE's is known once read (the scored count's bound is n_latents)."""
    if variant.is_oracle:  # one latent per concept the fitting sample holds both ways: at most every concept
        from sae_models.toyworld.grammar import concepts

        return Count(len(concepts()), exact=False)
    if variant.is_external or d_model is None:
        return Count(settings.autointerp.n_latents, exact=False)
    from sae_models.sae.sweep import sae_config  # the width the sweep builds the dictionary with

    return Count(sae_config(variant, d_model, settings.sweep, {}).d_sae)


def _parameters(settings: Settings, variant, d_model: int | None, width: Count) -> Count | None:
    """The dictionary's parameters, built on the meta device (no memory); None where its size is not known (an
    external SAE, or a model whose width needs its config)."""
    if variant.is_external or d_model is None:
        return None
    if variant.is_oracle:
        return Count(2 * d_model * width.value + width.value + d_model, exact=False)  # encoder, decoder, biases
    import torch

    from sae_models.sae import build_sae
    from sae_models.sae.sweep import sae_config

    with torch.device("meta"):
        sae = build_sae(sae_config(variant, d_model, settings.sweep, {}))
    return Count(sum(p.numel() for p in sae.parameters()))


ROWS = [("activation tokens", lambda p: p.tokens),
        ("activation bytes", lambda p: p.activation_bytes),
        *[(label, lambda p, k=kind: Count(p.saes.get(k, 0))) for label, kind in (
            ("SAEs trained", "trained"), ("baselines fitted", "baselines"), ("oracle dictionaries", "oracles"),
            ("external SAEs", "external"))],
        ("dictionary parameters", lambda p: p.parameters),
        ("SAE training tokens", lambda p: Count(p.training_tokens)),
        ("LM tokens streamed for training", lambda p: Count(p.streamed_tokens)),
        ("mixing buffer bytes", lambda p: p.buffer_bytes),
        ("training state of one streamed pass, bytes", lambda p: p.pass_state_bytes),
        ("latents scored", lambda p: p.scored_latents),
        ("steering generations", lambda p: p.generations), ("tokens generated", lambda p: p.new_tokens),
        *[(f"judge requests: {task}", lambda p, t=task: p.judge_requests.get(t, Count(0)))
          for task in [*AUTOINTERP_REQUESTS, "rate"]]]


def request_tokens(settings: Settings) -> dict[str, tuple[int, int]]:
    """Per judge task, an estimate of one request's prompt tokens (its messages' characters / ``CHARS_PER_TOKEN``,
    built with the configured numbers and sizes of windows, each token a stand-in word) and the completion tokens
    it allows (its ``max_tokens``: a bound)."""
    from sae_models.judges import prompts
    from sae_models.judges.protocol import Window

    auto, steer = settings.autointerp, settings.steering
    window = Window(tuple([WORD] * auto.width), tuple([1.0] * auto.width))
    explanation = "tokens such as the ones in the windows above"  # a typical explanation's length
    requests = {
        "explain": prompts.explain_request([window] * (auto.explain_top + auto.explain_importance), 0.5),
        "detect": prompts.detect_request(explanation, [window] * (auto.score_top + auto.score_importance
                                                                  + auto.score_random)),
        "simulate": prompts.simulate_request(explanation, [window] * (auto.sim_top + auto.sim_random)),
        "rate": prompts.rate_request("concept", explanation, "tell me about a topic", WORD * steer.max_new_tokens),
    }
    return {task: (sum(len(m["content"]) for m in r.messages) // CHARS_PER_TOKEN, r.max_tokens)
            for task, r in requests.items()}


def judge_cost(settings: Settings, plans: list[ModelPlan]) -> str:
    """The judge's tokens over every model, and their price at lake.toml's [judge] prices: an estimate."""
    per_request = request_tokens(settings)
    prompt = sum(p.judge_requests.get(t, Count(0)).value * per_request[t][0] for p in plans for t in per_request)
    completion = sum(p.judge_requests.get(t, Count(0)).value * per_request[t][1] for p in plans for t in per_request)
    judge = settings.judge
    prompt_usd = prompt * judge.price_prompt_per_m / 1e6
    completion_usd = completion * judge.price_completion_per_m / 1e6
    return (f"judge tokens: about {prompt:,} prompt tokens (an estimate, {CHARS_PER_TOKEN} characters per token) and "
            f"at most {completion:,} completion tokens (each answer at its limit); at [judge]'s prices about "
            f"${prompt_usd:,.2f} for prompts and at most ${completion_usd:,.2f} for answers"
            + ("" if judge.price_prompt_per_m or judge.price_completion_per_m else " (no prices set)")
            + "; requests a cache already answered cost nothing, retries are not counted")


def hours(settings: Settings, plans: list[ModelPlan]) -> str:
    """Hours of the three stages whose throughput [plan] gives, over every model; what is not counted, said."""
    rates = settings.plan
    lm_tokens = sum(p.tokens.value + p.streamed_tokens for p in plans)
    stages = [("the LM over the activation and streamed tokens", lm_tokens, rates.lm_tokens_per_s,
               "lm_tokens_per_s"),
              ("SAE training", sum(p.training_tokens for p in plans), rates.sae_tokens_per_s, "sae_tokens_per_s"),
              ("steered generation", sum(p.new_tokens.value for p in plans), rates.generated_tokens_per_s,
               "generated_tokens_per_s")]
    known = [f"{name} {tokens / rate / 3600:,.1f} h" for name, tokens, rate, _ in stages if rate]
    unset = [key for _, _, rate, key in stages if not rate]
    out = "hours, from [plan]'s measured throughputs: " + ("; ".join(known) if known else "none set")
    if unset:
        out += f" (unset: {', '.join(unset)})"
    return out + ("; not counted: latent examples, autointerp's judge time, feature scores, DTC, the CE / KL "
                  "metrics and patching")


def format_plan(plans: list[ModelPlan]) -> str:
    """The corpus's activation documents (every model reads the same), then one markdown table: a row per
    quantity, a column per model, and the total."""
    header = [f"activation documents: {plans[0].documents} (every model reads the same)" if plans else "", "",
              "| | " + " | ".join(p.model for p in plans) + " | total |", "|---" * (len(plans) + 2) + "|"]
    lines = []
    for name, value_of in ROWS:
        counts = [value_of(p) for p in plans]
        known = [c for c in counts if c is not None]
        total = sum(known[1:], known[0]) if known and len(known) == len(counts) else "?"
        lines.append(f"| {name} | " + " | ".join("?" if c is None else str(c) for c in counts) + f" | {total} |")
    return "\n".join(header + lines)
