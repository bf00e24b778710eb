"""``corpus``: documents for training toy LMs and for caching activations; and the ``world`` job."""

from functools import lru_cache
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from assets.lakehouse.config import CorpusSection
from assets.lakehouse.fingerprints import record
from assets.lakehouse.lake import Lake
from assets.lakehouse.tables import spec
from assets.shared.automation import SETTINGS_CHANGED
from assets.shared.metadata import materialized, table_metadata
from assets.shared.resources import LakeResource


@lru_cache(maxsize=2)
def _labels_at(lake: Lake, corpus_stamp: tuple) -> dict[int, list]:
    docs = lake.read_split("activation")
    return {d: w for d, w in zip(docs.column("doc_id").to_pylist(), docs.column("labels").to_pylist(),
                                 strict=True) if w is not None}


def document_labels(lake: Lake) -> dict[int, list]:
    """doc_id -> per-word concept labels of the activation documents (none outside the toy world). Every
    SAE of a run reads the same corpus: kept per process until the corpus is rewritten."""
    return _labels_at(lake, lake.stamp("corpus"))


class CorpusError(ValueError):
    """The configured corpus is missing, unreadable or empty."""


def toyworld_corpus(cfg: CorpusSection) -> pa.Table:
    from sae_models.toyworld import ToyWorld

    splits = [("lm_train", cfg.lm_train_docs), ("lm_eval", cfg.lm_eval_docs), ("activation", cfg.activation_docs)]
    world = ToyWorld(cfg.seed)
    rows = []
    for split, n in splits:
        for doc in world.documents(n):
            rows.append({"doc_id": len(rows), "split": split, "kind": doc.kind, "topic": doc.topic,
                         "second_topic": doc.second_topic, "sentiment": doc.sentiment, "text": doc.text,
                         "labels": doc.labels})
    return pa.Table.from_pylist(rows, schema=spec("corpus").schema)


def file_corpus(path: Path, cfg: CorpusSection) -> pa.Table:
    """A local .txt (one document per line) or .parquet (column ``text``), all of it for activations."""
    if not path.is_file():
        raise CorpusError(f"corpus source {str(path)!r}: no such file")
    if path.suffix == ".parquet":
        try:
            texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()
        except (pa.ArrowInvalid, KeyError, OSError) as exc:
            raise CorpusError(f"corpus source {str(path)!r}: cannot read a `text` column ({exc})") from exc
    else:
        texts = path.read_text(encoding="utf-8", errors="replace").splitlines()
    texts = [t.strip() for t in texts if t and t.strip()][: cfg.activation_docs]
    n, schema = len(texts), spec("corpus").schema
    return pa.table({
        "doc_id": pa.array(range(n), pa.int64()), "split": ["activation"] * n, "kind": ["text"] * n,
        "topic": pa.nulls(n, pa.string()), "second_topic": pa.nulls(n, pa.string()),
        "sentiment": pa.nulls(n, pa.string()), "text": texts,
        "labels": pa.nulls(n, schema.field("labels").type),
    }, schema=schema)


def build_corpus(cfg: CorpusSection) -> pa.Table:
    table = toyworld_corpus(cfg) if cfg.source == "toyworld" else file_corpus(Path(cfg.source).expanduser(), cfg)
    if table.num_rows == 0:
        raise CorpusError(f"corpus source {cfg.source!r}: no documents (empty corpus)")
    return table


@dg.asset(group_name="world", kinds={"parquet"}, automation_condition=SETTINGS_CHANGED)
def corpus(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Documents, split for toy-LM training (lm_train / lm_eval) and for activation caching (activation)."""
    cfg = lake.settings().corpus
    try:
        table = build_corpus(cfg)
    except CorpusError as exc:
        raise dg.Failure(str(exc)) from None
    rec = record("corpus", lake.settings())
    lake.lake().write_table("corpus", table, rec)
    splits = {s: int((table.column("split").to_numpy(zero_copy_only=False) == s).sum())
              for s in ("lm_train", "lm_eval", "activation")}
    context.log.info(f"corpus: {table.num_rows} documents {splits}")
    return materialized(rec, {**table_metadata(table.drop_columns(["labels"])),
                              **{f"docs_{k}": v for k, v in splits.items()}})


world_job = dg.define_asset_job("world", selection=[corpus])
