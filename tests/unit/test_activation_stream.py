"""Training from activations the LM generates on the fly: the mixing buffer, the cached path's equal, resumption
after SIGKILL, and one pass feeding a whole sweep."""

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from sae_models.activation_store import ActivationReader, held_out_documents, write_shards
from sae_models.activation_stream import ActivationStream
from sae_models.sae import SAEConfig, build_sae
from sae_models.sae.train import CHECKPOINT, CachedBatches, TrainConfig, Trainer, train_sae, train_saes
from tests.sae_helpers import sparse_directions_data


def _labelled(chunk):
    """A fake LM: document i has i % 5 + 1 tokens, each activation [i, position]."""
    return np.array([[i, p] for i, _ in chunk for p in range(i % 5 + 1)], dtype=np.float32).reshape(-1, 2)


DOCS = [(i, f"doc {i}") for i in range(40)]


def test_one_pass_reads_every_document_once_and_spreads_each_over_many_batches():
    stream = ActivationStream(_labelled, DOCS, buffer_tokens=32, docs_per_call=4, seed=3)
    tokens_per_pass = sum(i % 5 + 1 for i, _ in DOCS)
    batches = stream.batches(4)
    rows = torch.cat([next(batches)[1] for _ in range(tokens_per_pass // 4 - 8)])  # the buffer's last rows wait
    seen = Counter(int(doc) for doc in rows[:, 0])
    assert all(count <= i % 5 + 1 for i, count in seen.items())  # no token twice within the pass
    assert len(seen) >= 30
    batches_of = {i: {b for b in range(len(rows) // 4) if i in rows[4 * b:4 * b + 4, 0].tolist()} for i in seen}
    several = [i for i, count in seen.items() if count >= 2]
    # a document's tokens land in different batches (in order, 2 to 5 tokens would share 1 or 2 batches of 4)
    assert sum(len(batches_of[i]) for i in several) / sum(seen[i] for i in several) > 0.7


def test_a_stream_started_at_a_position_reads_on_from_that_document():
    stream = ActivationStream(_labelled, DOCS, buffer_tokens=16, docs_per_call=4, seed=0)
    positions = [position for _, (position, _batch) in zip(range(80), stream.batches(2), strict=False)]
    assert positions == sorted(positions) and positions[-1] > len(DOCS)  # it goes on past a pass
    resumed = ActivationStream(_labelled, DOCS, buffer_tokens=16, docs_per_call=4, seed=0).batches(2, 8)
    order = np.random.default_rng([0, 0]).permutation(len(DOCS))
    first = {int(d) for _, (_position, batch) in zip(range(3), resumed, strict=False) for d in batch[:, 0]}
    assert first <= set(order[8:20].tolist())  # the documents after the 8 already read


def test_bad_stream_settings_are_one_clear_error():
    with pytest.raises(ValueError, match="exceeds half the mixing buffer"):
        next(ActivationStream(_labelled, DOCS, buffer_tokens=16).batches(9))
    empty = ActivationStream(lambda chunk: np.zeros((0, 2), np.float32), DOCS, buffer_tokens=16, docs_per_call=4)
    with pytest.raises(ValueError, match="gave no activations"):
        next(empty.batches(2))


def _toy_split(lm_dir: Path, tmp: Path):
    """(extract, training documents, cache of every training token, held-out reader, lake-sized sample)."""
    from sae_models.lm import ExtractionConfig, activation_extractor, iter_activations, load_lm
    from sae_models.toyworld import ToyWorld

    lm = load_lm(str(lm_dir), dtype="float32", device="cpu")
    docs = [(i, d.text) for i, d in enumerate(ToyWorld(1).documents(1000))]
    held = held_out_documents(np.array([i for i, _ in docs]), 0.1)
    train = [doc for doc, h in zip(docs, held, strict=True) if not h]
    cfg = ExtractionConfig(context=64)
    cached = write_shards(iter_activations(lm, train, cfg, layer=1), tmp / "cache", lm.d_model)
    write_shards(iter_activations(lm, [d for d, h in zip(docs, held, strict=True) if h], cfg, layer=1),
                 tmp / "held", lm.d_model)
    write_shards(iter_activations(lm, train, cfg, layer=1, max_tokens=cached.rows // 10), tmp / "sample", lm.d_model)
    return activation_extractor(lm, cfg, layer=1), train, cached.rows


def _explained_variance(sae, reader: ActivationReader) -> float:
    from sae_models.sae.metrics import reconstruction_metrics

    metrics, _ = reconstruction_metrics(sae, ((k["token_id"], a) for k, a in reader.rows(("token_id",))))
    return metrics.explained_variance


def test_a_stream_of_ten_times_the_stored_tokens_trains_as_well_as_the_cache_of_them(trained_toy_lm, tmp_path):
    """The lake keeps a tenth of the training tokens (the sample that sets the activation scale); the stream
    runs the LM over the training documents as the SAE consumes them. On the same tokens its SAE reconstructs
    held-out activations as well as one trained from their cache."""
    extract, train_docs, cached_tokens = _toy_split(trained_toy_lm, tmp_path)
    cfg = TrainConfig(steps=130, batch_size=256, lr=1e-3, lr_warmup_steps=10, sparsity_warmup_steps=20, progress_s=0)
    sample = ActivationReader(tmp_path / "sample")
    assert cfg.steps * cfg.batch_size >= 10 * sample.n_rows and cached_tokens >= 10 * sample.n_rows
    saes = []
    for source in (CachedBatches(ActivationReader(tmp_path / "cache"), 0),
                   ActivationStream(extract, train_docs, buffer_tokens=4096)):
        torch.manual_seed(0)
        sae = build_sae(SAEConfig("topk", sample.d_model, 128, k=8))
        train_saes([Trainer(sae, cfg, log=lambda _: None)], source, cfg, sample)
        saes.append(sae)
    held = ActivationReader(tmp_path / "held")
    cached_ev, streamed_ev = (_explained_variance(sae, held) for sae in saes)
    print(f"held-out explained variance: cached {cached_ev:.4f}, streamed {streamed_ev:.4f}")  # for pytest -s
    assert cached_ev > 0.6
    assert abs(streamed_ev - cached_ev) < 0.01, (cached_ev, streamed_ev)


STREAM_SCRIPT = textwrap.dedent("""
    import os, signal, sys, numpy as np, torch
    from pathlib import Path
    from sae_models.activation_store import ActivationReader, held_out_documents
    from sae_models.activation_stream import ActivationStream
    from sae_models.lm import ExtractionConfig, activation_extractor, load_lm
    from sae_models.sae import SAEConfig, build_sae, save_sae
    from sae_models.sae.train import TrainConfig, Trainer, train_saes
    from sae_models.toyworld import ToyWorld
    lm_dir, sample, ckpt, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    kill_at = int(sys.argv[5])
    lm = load_lm(lm_dir, dtype="float32", device="cpu")
    docs = [(i, d.text) for i, d in enumerate(ToyWorld(1).documents(1000))]
    docs = [doc for doc, held in zip(docs, held_out_documents(np.arange(1000), 0.1)) if not held]
    stream = ActivationStream(activation_extractor(lm, ExtractionConfig(context=64), layer=1), docs, 2048)

    def log(message):
        print(message, flush=True)
        if kill_at and f" step {kill_at}/" in message:
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = TrainConfig(steps=80, batch_size=256, lr=1e-3, lr_warmup_steps=10, sparsity_warmup_steps=20,
                      checkpoint_every=20, log_every=1, progress_s=0)
    torch.manual_seed(0)
    sae = build_sae(SAEConfig("topk", lm.d_model, 128, k=8))
    (result,) = train_saes([Trainer(sae, cfg, ckpt, log=log)], stream, cfg, ActivationReader(sample))
    print(f"tokens {result.tokens}")
    save_sae(sae, out)
""")


def test_sigkill_midway_through_a_stream_then_a_rerun_resumes_from_the_checkpoint(trained_toy_lm, tmp_path):
    """Killed at step 50 (its last checkpoint is step 40's), the rerun goes on from step 40 and the stream
    position recorded there, and ends with an SAE as good as an unbroken run's (a refilled buffer mixes other
    rows, so it is not the same SAE)."""
    _toy_split(trained_toy_lm, tmp_path)
    script = tmp_path / "stream.py"
    script.write_text(STREAM_SCRIPT)
    run = [sys.executable, str(script), str(trained_toy_lm), str(tmp_path / "sample")]
    subprocess.run(run + [str(tmp_path / "ref-ckpt"), str(tmp_path / "ref"), "0"], check=True, capture_output=True)
    killed = subprocess.run(run + [str(tmp_path / "ckpt"), str(tmp_path / "out"), "50"], capture_output=True)
    assert killed.returncode == -9 and not (tmp_path / "out").exists()
    resumed = subprocess.run(run + [str(tmp_path / "ckpt"), str(tmp_path / "out"), "0"], check=True,
                             capture_output=True, text=True)
    lines = resumed.stdout.splitlines()
    assert lines[0] == "resumed at step 40/80" and lines[-1] == f"tokens {80 * 256}"
    from sae_models.sae import load_sae

    held = ActivationReader(tmp_path / "held")
    ref, out = (_explained_variance(load_sae(tmp_path / name), held) for name in ("ref", "out"))
    assert abs(ref - out) < 0.02, (ref, out)


def test_a_sweep_fed_by_one_pass_trains_each_sae_as_it_trains_alone(tmp_path):
    """One pass over the batches feeds every SAE of the sweep; each ends bit-identical to its solo run."""
    reader, _, _ = sparse_directions_data(tmp_path / "data", n=4000)
    cfg = TrainConfig(steps=30, batch_size=128, lr=1e-3, lr_warmup_steps=5, sparsity_warmup_steps=5, progress_s=0)
    configs = [SAEConfig("topk", 32, 64, k=4), SAEConfig("relu", 32, 64, sparsity_coefficient=0.01),
               SAEConfig("jumprelu", 32, 64, target_l0=4, sparsity_coefficient=1.0)]

    def built(config):
        torch.manual_seed(0)
        return build_sae(config)

    together = [built(c) for c in configs]
    train_saes([Trainer(s, cfg, log=lambda _: None) for s in together], CachedBatches(reader, cfg.seed), cfg, reader)
    for config, sae in zip(configs, together, strict=True):
        alone = built(config)
        train_sae(alone, reader, cfg, log=lambda _: None)
        for key, value in alone.state_dict().items():
            assert torch.equal(value, sae.state_dict()[key]), (config.architecture, key)


class _Recording(ActivationStream):
    """A stream that notes the position each pass over it starts at."""

    starts: list

    def batches(self, batch_size, position=None):
        self.starts.append(position)
        yield from super().batches(batch_size, position)


def test_a_resumed_run_starts_the_stream_at_the_position_its_checkpoint_recorded(tmp_path):
    stream = _Recording(_labelled, DOCS, buffer_tokens=32, docs_per_call=4)
    stream.starts = []
    cfg = TrainConfig(steps=12, batch_size=4, checkpoint_every=5, lr_warmup_steps=1, progress_s=0, log_every=1)

    def crash_at_step_7(message: str) -> None:
        if " step 7/" in message:
            raise KeyboardInterrupt

    def trainer(log):
        torch.manual_seed(0)
        return Trainer(build_sae(SAEConfig("topk", 2, 4, k=1)), cfg, tmp_path / "ckpt", log=log)

    reader, _, _ = sparse_directions_data(tmp_path / "data", d=2, n_feat=4, n=512)
    with pytest.raises(KeyboardInterrupt):
        train_saes([trainer(crash_at_step_7)], stream, cfg, reader)
    with safe_open(tmp_path / "ckpt" / CHECKPOINT, framework="pt") as handle:
        recorded = json.loads(handle.metadata()["state"])
    resumed = trainer(lambda _: None)
    train_saes([resumed], stream, cfg, reader)
    assert recorded["step"] == 5 and recorded["position"] > 0
    assert stream.starts == [None, recorded["position"]] and resumed.step == 12


def test_the_streamed_path_trains_an_sae_at_gemma_2_2b_dimensions(tmp_path):
    """A CPU smoke at the paper's sizes: a randomly initialised 2-layer Gemma-2 of Gemma-2-2B's width (d_model
    2,304, MLP 9,216, 8 heads of 256; the toy vocabulary), read after its first layer, streams a couple of
    thousand tokens into a TopK SAE of 16,384 latents, which checkpoints, saves and loads."""
    from transformers import AutoModelForCausalLM, Gemma2Config

    from sae_models.lm import ExtractionConfig, LoadedLM, activation_extractor, load_tokenizer
    from sae_models.sae import load_sae, save_sae
    from sae_models.toyworld import ToyWorld, save_tokenizer

    save_tokenizer(tmp_path / "tok")
    tok = load_tokenizer(str(tmp_path / "tok"))
    config = Gemma2Config(hidden_size=2304, intermediate_size=9216, num_hidden_layers=2, num_attention_heads=8,
                          num_key_value_heads=4, head_dim=256, vocab_size=len(tok), max_position_embeddings=128,
                          pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False)
    lm = LoadedLM(model, tok, "gemma-2-2b-shaped", "gemma2", 2, 2304)
    docs = [(i, d.text) for i, d in enumerate(ToyWorld(0).documents(300))]
    extract = activation_extractor(lm, ExtractionConfig(batch_size=16, context=64), layer=0)
    sample_dir = tmp_path / "sample"
    write_shards([_as_batch(extract(docs[:16]))], sample_dir, 2304)
    cfg = TrainConfig(steps=4, batch_size=256, lr_warmup_steps=2, sparsity_warmup_steps=2, checkpoint_every=2,
                      progress_s=0)
    torch.manual_seed(0)
    sae = build_sae(SAEConfig("topk", 2304, 16384, k=50))
    stream = ActivationStream(extract, docs[16:], buffer_tokens=1024, docs_per_call=16)
    (result,) = train_saes([Trainer(sae, cfg, tmp_path / "ckpt", log=lambda _: None)], stream, cfg,
                           ActivationReader(sample_dir))
    assert result.tokens == 4 * 256 and all(np.isfinite(row["mse"]) for row in result.history)
    assert (tmp_path / "ckpt" / CHECKPOINT).is_file()
    save_sae(sae, tmp_path / "sae")
    loaded = load_sae(tmp_path / "sae")
    assert (loaded.cfg.d_in, loaded.cfg.d_sae) == (2304, 16384)


def _as_batch(acts: np.ndarray):
    from sae_models.lm.extract import ActivationBatch

    n = len(acts)
    return ActivationBatch(np.arange(n, dtype=np.int64), np.zeros(n, np.int32), np.zeros(n, np.int32), acts)


def test_the_buffer_at_its_fullest_stays_within_what_the_plan_counts():
    """The plan counts 2 x (buffer_tokens + one forward's rows) rows; here a forward gives 16 documents of 10
    rows."""
    import tracemalloc

    d = 64
    stream = ActivationStream(lambda chunk: np.ones((10 * len(chunk), d), np.float16), DOCS * 20, 2000, 16)
    bound = 2 * (2000 + 16 * 10) * d * 2
    tracemalloc.start()
    batches = stream.batches(100)
    for _ in range(200):
        next(batches)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert bound / 2 < peak <= bound + 100 * d * 4 + 4096, (peak, bound)  # plus one float32 batch


def test_a_checkpoint_of_the_cache_is_not_resumed_on_a_stream(tmp_path):
    """A position means something only on its own source: switching [sweep] source after a kill starts afresh
    rather than reading a cache's [epoch, batch] as a stream's document count."""
    reader, _, _ = sparse_directions_data(tmp_path / "data", d=2, n_feat=4, n=512)
    cfg = TrainConfig(steps=8, batch_size=4, checkpoint_every=5, lr_warmup_steps=1, progress_s=0)
    logs: list[str] = []

    def trainer():
        torch.manual_seed(0)
        return Trainer(build_sae(SAEConfig("topk", 2, 4, k=1)), cfg, tmp_path / "ckpt", log=logs.append)

    first = trainer()
    first.finish = lambda seconds: (_ for _ in ()).throw(KeyboardInterrupt)  # killed after its step-5 checkpoint
    with pytest.raises(KeyboardInterrupt):
        train_saes([first], CachedBatches(reader, 0), cfg, reader)
    (result,) = train_saes([trainer()], ActivationStream(_labelled, DOCS, 32, 4), cfg, reader)
    assert any("starting afresh" in line for line in logs) and result.tokens == 8 * 4


def test_an_sae_whose_training_fails_drops_out_and_the_others_finish(tmp_path):
    from sae_models.sae.train import TrainingError

    reader, _, _ = sparse_directions_data(tmp_path / "data", n=2000)
    cfg = TrainConfig(steps=10, batch_size=64, progress_s=0)
    trainers = [Trainer(build_sae(SAEConfig("topk", 32, 64, k=4)), cfg, log=lambda _: None) for _ in range(2)]
    step = trainers[0]._train_step

    def diverge(x):
        if trainers[0].step == 3:
            raise TrainingError("step 3: loss is nan")
        return step(x)

    trainers[0]._train_step = diverge
    failed, finished = train_saes(trainers, CachedBatches(reader, 0), cfg, reader)
    assert failed.error == "step 3: loss is nan" and trainers[0].step == 3
    assert finished.error is None and trainers[1].step == 10 and finished.tokens == 10 * 64


def test_a_batch_larger_than_half_the_buffer_is_refused_when_lake_toml_loads():
    from pydantic import ValidationError

    from sae_models.sae.config import SweepConfig

    with pytest.raises(ValidationError, match=r"batch_size 1024 exceeds half of \[sweep.stream\] buffer_tokens"):
        SweepConfig(source="stream", stream={"buffer_tokens": 100})
    assert SweepConfig(source="cache", stream={"buffer_tokens": 100}).source == "cache"  # read only when streaming
