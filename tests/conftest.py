"""Shared fixtures: tiny trained toy models, tiny random models of four families, a tiny lake.toml. Tests live by
layer: ``unit/`` (functions and tiny models, no Dagster run), ``integration/`` (the lake, the SQL catalog, judges
and processes on loopback), ``system/`` (materialized graphs, crashes, the scale-out services); each test carries
its folder's marker, so ``pytest -m unit`` runs one layer."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The test processes share the cores with processes they start (a demo on two threads, Celery workers): OpenMP
# threads that spin while they wait would hold a core the others need (measured: the pinned toy LM test 45 s
# beside a busy core, 17 s with passive waiting). How threads wait changes no result (docs/operations.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from sae_models.reproducible import CpuPin, apply_pin  # noqa: E402
from tests.tiny_world import TINY, tiny_toml  # noqa: E402

# Tests compute what the toy world's pin makes of them on any machine (lake.toml's [reproducibility] kernels),
# before any test imports torch; on the tiny world's one thread, since `make test` runs two test processes.
apply_pin(CpuPin(**TINY["reproducibility"]))

LAYERS = ("unit", "integration", "system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its layer, and run the system tests first, the unit tests last: the two test
    processes of `make test` then end on short tests, not one waiting on the other's long one."""
    tests = Path(__file__).resolve().parent
    layer_of = {}
    for item in items:
        layer = item.path.resolve().relative_to(tests).parts[0]
        if layer not in LAYERS:
            raise pytest.UsageError(f"{item.path}: every test lives in one of tests/{{{','.join(LAYERS)}}}/")
        item.add_marker(layer)
        layer_of[item.nodeid] = LAYERS.index(layer)
    items.sort(key=lambda item: -layer_of[item.nodeid])


@pytest.fixture
def tiny_config(tmp_path, monkeypatch) -> Path:
    """A lake.toml for a 2-model toy world small enough to materialize in seconds; env points at it."""
    path = tmp_path / "lake.toml"
    path.write_text(tiny_toml())
    monkeypatch.setenv("SAE_LAKE_CONFIG", str(path))
    monkeypatch.delenv("SAE_LAKE_ROOT", raising=False)
    return path


def _random_model_dir(root: Path, family: str) -> Path:
    """A randomly initialised model of ``family`` with the toy tokenizer, saved as a HF directory. Every family
    draws its weights at std 1/sqrt(hidden), as the toy models do: at the families' own 0.02 a random Llama's
    attention is so flat that a position off by one changes its logits by a few 1e-6 only."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    from sae_models.lm.loading import load_tokenizer
    from sae_models.toyworld import ToyModelConfig, save_tokenizer
    from sae_models.toyworld.train import hf_config

    out = root / family
    save_tokenizer(out)
    tok = load_tokenizer(str(out))
    if family in ("gemma2", "qwen2"):
        config = hf_config(ToyModelConfig(family=family, hidden=32, layers=3, intermediate=64, context=64), tok)
    elif family == "llama":
        config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.pad_token_id, initializer_range=32 ** -0.5)
    else:
        config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=3, n_head=4, n_positions=64,
                            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id, initializer_range=32 ** -0.5)
    import torch

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def random_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("random_models")
    return {family: _random_model_dir(root, family) for family in ("gemma2", "qwen2", "llama", "gpt2")}


@pytest.fixture(scope="session")
def trained_toy_lm(tmp_path_factory) -> Path:
    """A 2-layer toy Gemma-2 trained for a few hundred steps: it knows the world well enough that ablating
    its residual stream hurts (which a random model's would not)."""
    from filelock import FileLock

    from sae_models.toyworld import ToyModelConfig, ToyWorld, train_toy_lm
    from sae_models.toyworld.train import REPORT_FILE

    # one model for the whole run: the test processes of `make test` share a base folder (pytest-xdist)
    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared
    out = shared / "trained_toy"
    with FileLock(str(out) + ".lock"):
        if not (out / REPORT_FILE).is_file():  # the last file training writes
            docs = [d.text for d in ToyWorld(0).documents(1500)]
            cfg = ToyModelConfig(family="gemma2", hidden=32, layers=2, intermediate=64, steps=800, context=64)
            train_toy_lm(docs[:1400], docs[1400:], cfg, out, log=lambda _: None)
    return out


S3_BUCKET = "sae-lake-test"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """An S3-compatible server on loopback (moto in server mode, its own process, one request at a time: see
    tests/s3_server.py) with one bucket; the AWS
    variables point at it for this process and the processes it starts. Stopped, and the variables restored,
    after the session."""
    import subprocess
    import sys
    import time

    import boto3

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tests.s3_server", str(port)], cwd=Path(__file__).parents[1],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for _ in range(200):
            try:
                boto3.client("s3").create_bucket(Bucket=S3_BUCKET)
                break
            except Exception:  # noqa: BLE001 - not listening yet
                assert server.poll() is None, "moto_server exited"
                time.sleep(0.05)
        yield env["AWS_ENDPOINT_URL"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


@pytest.fixture
def s3_lake(s3_server, tmp_path, monkeypatch) -> str:
    """A fresh lake root on the loopback S3 server, with its local mirror under tmp_path."""
    import uuid

    monkeypatch.setenv("SAE_LAKE_CACHE", str(tmp_path / "mirror"))
    return f"s3://{S3_BUCKET}/{uuid.uuid4().hex[:12]}"
