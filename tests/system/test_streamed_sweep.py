"""``[sweep] source = "stream"``: one pass of the LM trains every trained SAE of a model, on more tokens than the
lake stores, and each ``sae`` partition then takes its own; a baseline still fits on the lake's sample."""

import json

import dagster as dg
import pyarrow.parquet as pq

from assets.definitions import defs
from assets.shared.partitions import pair_key
from tests.tiny_world import one_model_toml

STREAM = {"sweep": {"architectures": ["topk", "relu"], "baselines": ["pca"], "source": "stream",
                    "stream": {"buffer_tokens": 1024}}}
PASS = "one streamed pass trains"


def _materialize(instance, job: str, partition, assets: list[str] | None = None):
    selection = [dg.AssetKey(a) for a in assets] if assets else None
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition,
                                                          asset_selection=selection, raise_on_error=False)
    assert result.success
    return [e.user_message for e in instance.all_logs(result.run_id) if PASS in e.user_message]


def test_one_streamed_pass_trains_the_models_sweep_and_each_partition_takes_its_sae(tmp_path, monkeypatch):
    from sae_models.activation_store import held_out_documents
    from sae_models.activation_stream import ActivationStream

    streamed: list[list[int]] = []
    init = ActivationStream.__init__

    def recording(self, extract, documents, *args, **kwargs):
        streamed.append([doc_id for doc_id, _ in documents])
        init(self, extract, documents, *args, **kwargs)

    monkeypatch.setattr(ActivationStream, "__init__", recording)
    config = tmp_path / "lake.toml"
    config.write_text(one_model_toml(STREAM))
    monkeypatch.setenv("SAE_LAKE_CONFIG", str(config))
    monkeypatch.delenv("SAE_LAKE_ROOT", raising=False)
    lake = tmp_path / "lake"
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("models", ["toy-gemma2"])
        instance.add_dynamic_partitions("saes", ["topk-k4", "relu-0.1", "pca"])
        _materialize(instance, "world", None)
        _materialize(instance, "model_chain", "toy-gemma2")
        stored = json.loads((lake / "activations" / "model=toy-gemma2" / "_manifest.json").read_text())["tokens"]

        trained = ["sae", "sae_training", "sae_metrics", "latent_stats"]
        first = _materialize(instance, "sae_sweep", pair_key("toy-gemma2", "topk-k4"), trained)
        assert len(set(first)) == 1 and "trains 2 SAEs" in first[0]
        waiting = lake / "_streamed" / "model=toy-gemma2"
        assert (waiting / "sae=relu-0.1" / "cfg.json").is_file() and not (waiting / "sae=topk-k4").exists()

        assert _materialize(instance, "sae_sweep", pair_key("toy-gemma2", "relu-0.1"), trained) == []
        assert not (waiting / "sae=relu-0.1").exists()  # taken, not copied
        assert _materialize(instance, "sae_sweep", pair_key("toy-gemma2", "pca"), ["sae", "sae_training"]) == []
        assert not list((lake / "_checkpoints").glob("model=toy-gemma2/*"))  # each pass's checkpoints are cleared

    corpus = pq.read_table(lake / "corpus").to_pandas()
    ids = corpus.loc[corpus["split"] == "activation", "doc_id"].to_numpy()
    (docs,) = streamed  # one pass, over exactly the activation documents the held-out split leaves for training
    assert sorted(docs) == sorted(ids[~held_out_documents(ids, 0.1)].tolist()) and len(docs) < len(ids)

    for sae in ("topk-k4", "relu-0.1"):
        history = pq.read_table(lake / "sae_training" / "model=toy-gemma2" / f"sae={sae}").to_pylist()
        assert history[-1]["step"] == 79
        record = json.loads((lake / "saes" / "model=toy-gemma2" / f"sae={sae}" / "_settings.json").read_text())
        assert record["settings"]["sae"]["source"] == "stream"
        (metrics,) = pq.read_table(lake / "sae_metrics" / "model=toy-gemma2" / f"sae={sae}").to_pylist()
        assert metrics["explained_variance"] > 0.6  # on the held-out documents of the lake's sample
    assert stored * 5 < 80 * 128  # the pass trained on more tokens than the lake holds
