"""Every lake table, declared once: its name (= the asset that writes it), its partition keys, its Arrow
schema. ``Lake.write_table`` casts to the schema, so a column has the same type in every partition.

Several schemas are derived from the typed rows of ``sae_models`` (resolved on first use, so loading the
code location does not import torch).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import pyarrow as pa

MODEL = ("model",)
MODEL_SAE = ("model", "sae")


@dataclass(frozen=True)
class TableSpec:
    name: str
    keys: tuple[str, ...]  # Hive partition keys in the path
    schema_of: Callable[[], pa.Schema] | str  # a function, or "module:NAME" of a schema
    doc: str
    vector_columns: tuple[str, ...] = ()  # fixed-size lists whose width depends on the model or the config

    @property
    def schema(self) -> pa.Schema:
        return _resolved(self.schema_of)

    @property
    def schema_with_keys(self) -> pa.Schema:
        """The schema a catalog view shows: the columns, then the partition keys (strings, from the path)."""
        return pa.schema([*self.schema, *(pa.field(k, pa.string()) for k in self.keys)])

    def mismatches(self, actual: pa.Schema) -> list[str]:
        """Columns whose name or type differ from the declaration (empty when the file conforms)."""
        declared = self.schema
        if actual.names != declared.names:
            return [f"columns {actual.names} != declared {declared.names}"]
        bad = []
        for field in declared:
            got = actual.field(field.name).type
            if field.name in self.vector_columns:
                ok = pa.types.is_fixed_size_list(got) and (got.value_type == field.type.value_type or (
                    pa.types.is_floating(got.value_type) and pa.types.is_floating(field.type.value_type)))
            else:
                ok = got == field.type
            if not ok:
                bad.append(f"{field.name}: {got} != declared {field.type}")
        return bad

    def conform(self, data: pa.Table | list) -> pa.Table:
        """``data`` (a table, or rows as dataclasses or dicts) with the declared columns, in order, cast to
        the declared types (vector columns as they are); a missing column or an impossible cast is one error
        naming the table."""
        from sae_models.arrow import to_table

        declared = self.schema
        try:
            table = data if isinstance(data, pa.Table) else to_table(data, declared)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"lake table {self.name}: does not fit its declared schema ({exc})") from exc
        missing = [n for n in declared.names if n not in table.column_names]
        if missing:
            raise ValueError(f"lake table {self.name}: missing columns {missing}")
        fields = [table.schema.field(f.name) if f.name in self.vector_columns else f for f in declared]
        try:
            return table.select(declared.names).cast(pa.schema(fields))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"lake table {self.name}: does not fit its declared schema ({exc})") from exc


@cache
def _resolved(schema_of: Callable[[], pa.Schema] | str) -> pa.Schema:
    if callable(schema_of):
        return schema_of()
    module, name = schema_of.split(":")
    return getattr(importlib.import_module(module), name)


def _corpus() -> pa.Schema:
    return pa.schema([
        ("doc_id", pa.int64()), ("split", pa.string()),  # lm_train | lm_eval | activation
        ("kind", pa.string()), ("topic", pa.string()), ("second_topic", pa.string()),  # a blended document's
        ("sentiment", pa.string()), ("text", pa.string()),
        ("labels", pa.list_(pa.list_(pa.string()))),  # per word: the ground-truth concepts (toy world only)
    ])


def _lm_eval() -> pa.Schema:
    from sae_models.arrow import schema_of
    from sae_models.toyworld.train import ToyModelReport

    head = pa.schema([("source", pa.string()), ("control_of", pa.string()), ("init_seed", pa.int64()),
                      ("family", pa.string()), ("n_layers", pa.int64()), ("d_model", pa.int64())])
    report = schema_of(ToyModelReport)
    return pa.schema([*head, *(f.with_nullable(True) for f in report)])  # null for hub / local models


def _activations() -> pa.Schema:
    from sae_models.activation_store import activation_schema

    return activation_schema(1, "float32")


def _interpretability_by_kind() -> pa.Schema:
    return pa.schema([("model", pa.string()), ("kind", pa.string()), ("is_baseline", pa.bool_()), ("n", pa.int64()),
                      *[(f"{score}{suffix}", pa.float64()) for score in ("detection", "simulation")
                        for suffix in ("", "_se", "_ci")]])


TABLES: dict[str, TableSpec] = {t.name: t for t in [
    TableSpec("corpus", (), _corpus, "documents with split, kind, topic (and a blend's second topic), sentiment, "
                                     "per-word concept labels"),
    TableSpec("lm_eval", MODEL, _lm_eval,
              "one row per model: how well it knows its world; a control twin names its trained model"),
    TableSpec("activations", MODEL, _activations, "one row per token: doc_id, pos, token_id, act",
              vector_columns=("act",)),
    TableSpec("sae_training", MODEL_SAE, "sae_models.sae.train:HISTORY_SCHEMA",
              "one row per logged training step: loss, L0, lr"),
    TableSpec("sae_metrics", MODEL_SAE, "sae_models.sae.metrics:SAE_METRICS_SCHEMA",
              "one row per SAE: SAEBench core metrics on held-out tokens"),
    TableSpec("latent_stats", MODEL_SAE, "sae_models.sae.metrics:LATENT_STATS_SCHEMA",
              "one row per latent: firing frequency, max and mean activation"),
    TableSpec("concept_recovery", MODEL_SAE, "sae_models.toyworld.truth:CONCEPT_RECOVERY_SCHEMA",
              "per toy-world concept: the best latent's F1"),
    TableSpec("latent_purity", MODEL_SAE, "sae_models.toyworld.truth:LATENT_PURITY_SCHEMA",
              "per latent: toy-world ground-truth purity"),
    TableSpec("latent_examples", MODEL_SAE, "sae_models.evals.examples:EXAMPLES_SCHEMA",
              "per scored latent: top, importance-weighted and random windows", vector_columns=("tokens", "acts")),
    TableSpec("autointerp", MODEL_SAE, "sae_models.evals.autointerp:AUTOINTERP_SCHEMA",
              "per scored latent: explanations, detection and simulation scores"),
    TableSpec("true_interpretability", MODEL_SAE, "sae_models.toyworld.interpretability:TRUE_INTERPRETABILITY_SCHEMA",
              "per scored latent (toy world): the best balanced detection accuracy of an exact one-feature "
              "explanation on the judge's windows, its feature, whether a single word reaches it"),
    TableSpec("interpretability", MODEL_SAE, "sae_models.evals.autointerp:INTERPRETABILITY_SCHEMA",
              "per SAE: mu, mu_simulation, judge usage"),
    TableSpec("interpretability_by_kind", (), _interpretability_by_kind,
              "per model and dictionary kind: mean CONCEPT100 scores with 95% CIs ([C23] Figure 2)"),
    TableSpec("steering_generations", MODEL_SAE, "sae_models.evals.steering:GENERATIONS_SCHEMA",
              "per (latent, factor, instruction): the prompt and the steered generation (factor 0: unsteered)"),
    TableSpec("steering", MODEL_SAE, "sae_models.evals.steering:STEERING_SCHEMA",
              "per generation: the judge's concept, instruct and fluency ratings and their harmonic mean"),
    TableSpec("steering_concepts", MODEL_SAE, "sae_models.evals.steering:CONCEPTS_SCHEMA",
              "per steered concept: the factor chosen on dev, the test score there, the unsteered score"),
    TableSpec("true_steerability", MODEL_SAE, "sae_models.toyworld.steerability:STEERABILITY_SCHEMA",
              "per steered latent (toy world): the judge-free rise of its concept's next-token probability at the "
              "factor chosen on dev documents, on test documents"),
    TableSpec("steering_summary", MODEL_SAE, "sae_models.evals.steering:SUMMARY_SCHEMA",
              "per SAE: steering utility g beside its unsteered baseline"),
    TableSpec("feature_scores", MODEL_SAE, "sae_models.evals.feature_scores:FEATURE_SCORES_SCHEMA",
              "per live latent: logit-lens tokens, output score S_out, DeltaC_1 and DeltaC_5, UP and DOWN ranks"),
    TableSpec("latent_profiles", MODEL_SAE, "sae_models.evals.profiles:LATENT_PROFILES_SCHEMA",
              "per latent: its activation histogram on held-out tokens, the logit lens's most promoted and most "
              "suppressed tokens with their logits (what the feature dashboards show)"),
    TableSpec("selection", MODEL_SAE, "sae_models.evals.selection:SELECTION_SCHEMA",
              "per SAE: g, g_out, g_dtc (DTC set chosen on dev, scored on test), the chosen set, the gains"),
    TableSpec("patching", MODEL_SAE, "sae_models.evals.patching:PATCHING_SCHEMA",
              "per KL threshold: the latent set greedy dropping keeps on IOI prompt pairs, its size, edit "
              "magnitude, held-out KL and logit difference, with the unpatched / fully patched baselines"),
    TableSpec("sae_summary", (), "assets.lakehouse.sql_tables:SAE_SUMMARY_SCHEMA",
              "per current SAE and baseline: every per-SAE score side by side (sql/sae_summary.sql)"),
    TableSpec("selection_lift", (), "assets.lakehouse.sql_tables:SELECTION_LIFT_SCHEMA",
              "per model: mean g without selection, with the output score, with DTC, and the lifts ([W25] Table 2)"),
    TableSpec("rank_agreement", (), "sae_models.evals.rank_agreement:RANK_AGREEMENT_SCHEMA",
              "per comparison and group: Kendall tau-b over SAEs, its BCa interval and permutation p; psi and Psi"),
    TableSpec("control_contrast", (), "sae_models.evals.control:CONTRAST_SCHEMA",
              "per dictionary of a trained model and score: its value, its control twin's, the difference and its "
              "95% BCa interval"),
    TableSpec("control_separation", (), "sae_models.evals.control:SEPARATION_SCHEMA",
              "per model and score: how well it tells trained SAEs from their random-weights twins' (AUROC, mean "
              "paired difference with its interval)"),
    TableSpec("instrument_reliability", (), "sae_models.evals.reliability:RELIABILITY_SCHEMA",
              "per model and instrument: split-half reliability over SAEs with its interval; per pair of "
              "instruments the ceiling on a tau between them"),
    TableSpec("proxies", (), "sae_models.evals.proxies:PROXIES_SCHEMA",
              "per model, per-SAE metric and steering target (g, true_steerability): tau-b over SAEs with its BCa "
              "interval, permutation p and Holm-adjusted p"),
    TableSpec("instrument_validity", (), "sae_models.evals.validity:VALIDITY_SCHEMA",
              "per model and instrument: Kendall tau-b against a known answer (the oracle dictionaries' corruption "
              "level) with its exact permutation p"),
    TableSpec("judge_cache", ("backend", "model"), "sae_models.judges.cache:SCHEMA",
              "every judge call, appended by the judge as it goes (an external asset: autointerp reads and "
              "extends it)"),
]}


def spec(name: str) -> TableSpec:
    if name not in TABLES:
        raise KeyError(f"lake table {name!r} is not declared in assets/lakehouse/tables.py")
    return TABLES[name]
