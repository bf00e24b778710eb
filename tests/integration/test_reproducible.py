"""The CPU pin: a toy LM trained under other kernels and thread counts in the environment has the same weights
(the whole graph's tables: tests/system/test_machine_independence.py), and a pin the machine cannot honour is one
line."""

import pytest

from assets.lakehouse.config import ConfigError, load_settings
from assets.shared.pin import pin_process
from sae_models import reproducible
from sae_models.reproducible import CpuPin, PinError, apply_pin, check_kernels, pin_environment
from tests.machines import MACHINES, run_on
from tests.tiny_world import DROP, TINY, tiny_toml

# A run worker's path: the code location's load sets the pin's variables, a step applies it, then the toy LM trains.
TRAIN_AND_HASH = """
import hashlib, sys, tempfile
from pathlib import Path
import assets.definitions
from assets.lakehouse.config import load_settings
from assets.shared.pin import pin_process
pin_process(load_settings(), apply=True)
import torch
from safetensors.torch import load_file
from sae_models.toyworld import ToyModelConfig, ToyWorld, train_toy_lm
docs = [d.text for d in ToyWorld(0).documents(240)]
out = Path(tempfile.mkdtemp())
cfg = ToyModelConfig(family="gemma2", hidden=32, layers=2, intermediate=64, context=64, steps=20)
train_toy_lm(docs[:200], docs[200:], cfg, out, log=lambda _: None)
weights = load_file(out / "model.safetensors")
print(hashlib.sha256(b"".join(weights[k].numpy().tobytes() for k in sorted(weights))).hexdigest())
"""


@pytest.mark.parametrize("pin", ["auto", "off"])
def test_toy_lm_weights_do_not_depend_on_the_machines_kernels_or_threads(tmp_path, pin):
    config = tmp_path / "lake.toml"
    config.write_text(tiny_toml({"reproducibility": {"pin": pin, "threads": DROP}}))
    # the first machine's OpenMP threads spin while they wait (the default outside the tests), the second's sleep:
    # how threads wait must change no result
    machines = ({**MACHINES[0], "OMP_WAIT_POLICY": "ACTIVE"}, MACHINES[1])
    hashes = {run_on(machine, TRAIN_AND_HASH, config).split()[-1] for machine in machines}
    # pinned (two threads): one set of weights; unpinned, the two environments train two different models
    assert len(hashes) == (1 if pin == "auto" else 2)


def test_the_pin_applies_to_toy_worlds_only_unless_asked(tiny_config):
    tiny_config.write_text(tiny_toml({"reproducibility": DROP}))
    assert load_settings().cpu_pin == CpuPin()  # a toy world is pinned by default
    real = {"models": {"real": {"source": "/data/models/real", "layer": 1, "tokens": 10}}}
    tiny_config.write_text(tiny_toml(real))
    assert load_settings().cpu_pin is None  # a real model (on a GPU, likely) is left as it is
    tiny_config.write_text(tiny_toml({**real, "reproducibility": {"pin": "on", "threads": 3}}))
    assert load_settings().cpu_pin == CpuPin(pin="on", threads=3)


@pytest.mark.parametrize(("setting", "message"), [
    ({"reproducibility": {"threads": 0}}, "reproducibility.threads: 0: Input should be greater than or equal to 1"),
    ({"reproducibility": {"capability": "neon"}}, "reproducibility.capability: 'neon': Input should be"),
    ({"steering": {"seed": -1}}, "steering.seed: seed -1: a seed is an integer in 0..2**63-1"),
])
def test_a_pin_or_seed_that_cannot_be_honoured_is_one_config_line(tiny_config, setting, message):
    tiny_config.write_text(tiny_toml(setting))
    with pytest.raises(ConfigError, match="^lake.toml: " + message.replace("(", r"\(").replace("*", r"\*")):
        load_settings()


def test_a_model_seed_out_of_range_names_the_model(tiny_config):
    tiny_config.write_text(tiny_toml({"models": {"toy-gemma2": {"toy": {"seed": 2**63}}}}))
    with pytest.raises(ConfigError, match=r"models\[0\].toy.seed: seed 9223372036854775808: a seed is"):
        load_settings()


def test_kernels_the_cpu_lacks_are_refused_not_swapped(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")  # restored after the test
    monkeypatch.setattr(reproducible, "cpu_flags", lambda: {"sse2", "avx2", "fma"})
    with pytest.raises(PinError, match="cannot run ATen's avx512 kernels \\(it lacks avx512bw avx512dq avx512f"):
        check_kernels(CpuPin(capability="avx512"), "lake.toml [reproducibility]")


def test_kernels_chosen_before_the_pin_are_refused(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    # this process runs AVX2 kernels (the tests are pinned): a pin to SSE's comes too late
    with pytest.raises(PinError, match="torch had chosen ATen's avx2 kernels before the pin to default; start a "
                                       "fresh process"):
        pin_environment(CpuPin(capability="default"), "the pin")


def test_a_machine_that_is_not_x86_64_is_refused(monkeypatch, tiny_config):
    monkeypatch.setattr(reproducible.platform, "machine", lambda: "aarch64")
    with pytest.raises(ConfigError, match="this machine is aarch64, and the pinned kernels \\(avx2\\) are x86-64's"):
        pin_process(load_settings())


def test_apply_pin_sets_the_threads(monkeypatch):
    import torch

    for name in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.setenv(name, CpuPin().environment()[name])
    try:
        assert apply_pin(CpuPin(threads=3)).endswith("ATen avx2 kernels (MKL AVX2), 3 intra-op threads")
        assert torch.get_num_threads() == 3
    finally:
        apply_pin(CpuPin(**TINY["reproducibility"]))  # the test processes' own pin
    assert torch.get_num_threads() == 1


def test_analysis_tables_are_computed_on_one_duckdb_thread(tmp_path):
    from assets.lakehouse.lake import Lake
    from assets.lakehouse.sql import analysis_connection

    with analysis_connection(Lake(tmp_path / "lake"), [], [], []) as con:
        assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 1
