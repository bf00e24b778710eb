"""Bad input, one row per input, each through the entry point a user would hit (the CLI or a Dagster run on a
materialized lake): one clear message that names the input, and the lake byte-identical afterwards."""

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from assets.cli import main as cli
from assets.definitions import defs
from assets.demo import run_demo
from assets.shared.partitions import pair_key
from tests.judge_endpoint import QuietHandler, reply, serving
from tests.tiny_world import one_model_toml

PARTITION = pair_key("toy-gemma2", "topk-k4")


class _EmptyAnswers(QuietHandler):
    def do_POST(self):
        reply(self, 200, "")


@pytest.fixture(scope="module")
def lake_world(tmp_path_factory):
    """A materialized lake (one toy model, one TopK SAE with every evaluation) and its instance."""
    root = tmp_path_factory.mktemp("bad_input")
    config = root / "lake.toml"
    config.write_text(one_model_toml())
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        mp.setenv("SAE_LAKE_CONFIG", str(config))
        mp.delenv("SAE_LAKE_ROOT", raising=False)
        run_demo(instance=instance, print_fn=lambda _: None)
        yield root, config, instance


def lake_digest(lake: Path) -> str:
    """Every path under the lake (folders too: a leftover staging folder counts) and every file's bytes."""
    digest = hashlib.sha256()
    for path in sorted(lake.rglob("*")):
        digest.update(str(path.relative_to(lake)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _failure(instance, job: str, partition, assets: list[str]) -> str:
    job_def = defs.resolve_job_def(job)
    result = job_def.execute_in_process(instance=instance, partition_key=partition, raise_on_error=False,
                                        asset_selection=[dg.AssetKey(a) for a in assets])
    messages = [e.step_failure_data.error.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert not result.success and len(messages) == 1, messages
    return messages[0]


def _cli_error(capsys, *args: str) -> str:
    assert cli(list(args)) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _malformed_value(root, config, instance, capsys, ready) -> tuple[str, list[str]]:
    config.write_text(one_model_toml({"sweep": {"target_l0": ["four"]}}))
    ready()
    return _cli_error(capsys, "config"), ["lake.toml", "target_l0"]


def _unknown_architecture(root, config, instance, capsys, ready):
    config.write_text(one_model_toml({"sweep": {"architectures": ["topk", "vanilla"]}}))
    ready()
    return _cli_error(capsys, "config"), ["lake.toml", "architectures", "vanilla"]


def _unsupported_lake_scheme(root, config, instance, capsys, ready):
    config.write_text(one_model_toml({"lake": {"root": "gs://bucket/lake"}}))
    ready()
    return _cli_error(capsys, "config"), ["[lake] root", "gs://bucket/lake", "s3://"]


def _corrupt_safetensors(root, config, instance, capsys, ready):
    weights = root / "lake" / "saes" / "model=toy-gemma2" / "sae=topk-k4" / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    ready()
    return _failure(instance, "sae_sweep", PARTITION, ["sae_metrics", "latent_stats"]), [str(weights.parent)]


def _truncated_parquet(root, config, instance, capsys, ready):
    shard = sorted((root / "lake" / "activations" / "model=toy-gemma2").glob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    ready()
    return _failure(instance, "sae_sweep", PARTITION, ["sae", "sae_training"]), [shard.name]


def _model_without_tokenizer(root, config, instance, capsys, ready):
    folder = root / "no-tokenizer"
    shutil.copytree(root / "lake" / "models" / "model=toy-gemma2", folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    config.write_text(one_model_toml({"models": {"local": {"source": str(folder), "layer": 1, "tokens": 500}}}))
    instance.add_dynamic_partitions("models", ["local"])
    ready()
    return _failure(instance, "model_chain", "local", ["language_model", "lm_eval"]), [str(folder), "tokenizer"]


def _model_of_another_width(root, config, instance, capsys, ready):
    source = root / "lake" / "models" / "model=toy-gemma2"
    local = {"source": str(source), "layer": 1, "tokens": 500, "d_model": 99}
    config.write_text(one_model_toml({"models": {"local": local}}))
    instance.add_dynamic_partitions("models", ["local"])
    ready()
    return _failure(instance, "model_chain", "local", ["activations"]), ["local", "d_model is 99", "d_model 32"]


def _judge_answering_garbage(root, config, instance, capsys, ready):
    with serving(_EmptyAnswers) as url:
        config.write_text(one_model_toml({"judge": {"backend": "openai", "model": "m", "max_retries": 0,
                                                    "base_url": url}}))
        ready()
        return _failure(instance, "sae_sweep", PARTITION, ["autointerp", "interpretability"]), [
            "judge openai:m", "not in the format", "(0 answers cached"]


def _sql_that_writes(root, config, instance, capsys, ready):
    target = root / "lake" / "copy.csv"
    ready()
    return _cli_error(capsys, "sql", f"copy (select * from lm_eval) to '{target}'"), ["read-only", "COPY"]


def _instructions_with_wrong_columns(root, config, instance, capsys, ready):
    bad = root / "instructions.jsonl"
    bad.write_text('{"instruction": "Tell me about the farm."}\n{"prompt": "Tell me about storms."}\n')
    config.write_text(one_model_toml({"steering": {"instructions": str(bad)}}))
    ready()
    return _failure(instance, "sae_sweep", PARTITION, ["steering_generations"]), [str(bad), "line 2"]


CASES: dict[str, Callable] = {
    "malformed lake.toml value": _malformed_value,
    "unknown architecture": _unknown_architecture,
    "lake root on an unsupported store": _unsupported_lake_scheme,
    "corrupt safetensors file": _corrupt_safetensors,
    "truncated Parquet file": _truncated_parquet,
    "model directory without a tokenizer": _model_without_tokenizer,
    "model whose width is not lake.toml's d_model": _model_of_another_width,
    "judge returning garbage": _judge_answering_garbage,
    "SQL statement that writes": _sql_that_writes,
    "instruction file with wrong columns": _instructions_with_wrong_columns,
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_clear_message_and_the_lake_is_untouched(lake_world, case, capsys, tmp_path):
    root, config, instance = lake_world
    lake = root / "lake"
    saved = tmp_path / "saved"
    shutil.copytree(lake, saved, symlinks=True)  # put back after each case (some put their bad input there)
    text = config.read_text()
    before: list[str] = []
    try:
        message, names = CASES[case](root, config, instance, capsys, lambda: before.append(lake_digest(lake)))
        print(f"{case}: {message}")  # the messages, for `pytest -s`
        assert all(n in message for n in names), message
        assert len(before) == 1 and lake_digest(lake) == before[0]
    finally:
        config.write_text(text)
        shutil.rmtree(lake)
        shutil.copytree(saved, lake, symlinks=True)
