"""The Dagster layer: definitions, the registry sensor, the whole toy graph end to end, and bad input."""

import json
import math
import re

import dagster as dg
import pyarrow.parquet as pq
import pytest

from assets.cli import main as cli
from assets.definitions import defs
from assets.defs.activations.checks import _shards
from assets.defs.models.registry_sensor import diff_registry, model_registry_sensor
from assets.demo import _failure, run_demo
from assets.lakehouse.config import load_settings
from assets.lakehouse.fingerprints import STAGE
from assets.lakehouse.lake import Lake
from assets.lakehouse.sql import query_text
from assets.lakehouse.tables import TABLES
from assets.shared.partitions import pair_key
from sae_models.evals.control import METRICS
from sae_models.lm import shared_lm_loads
from tests.tiny_world import edit_toml, tiny_toml

DEAD_JUDGE = {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "max_retries": 1, "timeout_s": 2}


def _failure_messages(result) -> list[str]:
    return [e.step_failure_data.error.message for e in result.all_events
            if e.event_type_value == "STEP_FAILURE"]


def _run(instance, job, partition=None):
    return defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition,
                                                        raise_on_error=False)


def test_definitions_load_with_partitions_checks_and_gpu_pool():
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {"corpus", "language_model", "lm_eval", "activations", "sae", "sae_training", "sae_metrics",
                    "latent_stats", "concept_recovery", "latent_purity", "latent_examples", "autointerp",
                    "interpretability", "interpretability_by_kind", "judge_cache", "catalog",
                    "steering_generations", "steering", "steering_concepts", "steering_summary",
                    "feature_scores", "selection", "sae_summary", "rank_agreement", "selection_lift", "report",
                    "patching", "patching_report", "control_contrast", "control_separation", "true_steerability",
                    "true_interpretability", "instrument_reliability", "instrument_validity", "proxies",
                    "latent_profiles", "feature_dashboards", "dashboards_index"}
    acts = repo.assets_defs_by_key[dg.AssetKey("activations")]
    assert acts.partitions_def.name == "models"
    check_names = {key.name for key in repo.asset_checks_defs_by_key}
    assert check_names == {"activations_finite", "activations_width", "activations_row_count",
                           "sae_metrics_finite", "sae_l0_near_target", "sae_explained_variance",
                           "autointerp_scores_in_range", "autointerp_concept_subset_complete",
                           "steering_ratings_valid", "steering_test_rows_complete", "steering_g_in_range",
                           "feature_scores_complete", "selection_g_in_range", "patching_model_solves_ioi",
                           "instrument_validity_complete", "proxies_complete", "true_interpretability_in_range",
                           "true_steerability_in_range"}
    assert acts.op.pool == "gpu" and "dagster-k8s/config" in acts.op.tags


def test_registry_sensor_adds_new_models_and_variants_and_reports_removed(tiny_config):
    with dg.DagsterInstance.ephemeral() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"lake": defs.resources["lake"]})
        first = model_registry_sensor(ctx)
        assert sorted(r.partition_key for r in first.run_requests) == ["toy-gemma2", "toy-gemma2-random", "toy-qwen2"]
        models_req, saes_req = first.dynamic_partitions_requests
        assert models_req.partition_keys == ["toy-gemma2", "toy-qwen2", "toy-gemma2-random"]
        assert saes_req.partition_keys == ["relu-0.1", "topk-k4", "gated-0.1", "pca", "neuron"]
        instance.add_dynamic_partitions("models", ["toy-gemma2", "toy-qwen2", "toy-gemma2-random", "retired"])
        instance.add_dynamic_partitions("saes", saes_req.partition_keys)
        # a changed entry is left to the automation (SettingsChanged); a new variant refreshes the catalog
        tiny_config.write_text(tiny_toml({"sweep": {"target_l0": [4, 8]}, "models": {"toy-gemma2": {"tokens": 999}}}))
        ctx = dg.build_sensor_context(instance=instance, cursor=first.cursor,
                                      resources={"lake": defs.resources["lake"]})
        second = model_registry_sensor(ctx)
        assert [(r.job_name, r.partition_key) for r in second.run_requests] == [("catalog_refresh", None)]
        (saes_req,) = second.dynamic_partitions_requests
        assert saes_req.partition_keys == ["topk-k8"]
    diff = diff_registry(load_settings(), {"toy-gemma2", "toy-qwen2", "toy-gemma2-random", "retired"})
    assert diff.removed == ["retired"] and not diff.added


def test_whole_toy_graph_materializes_with_checks_passing_and_answers_sql(tiny_config, capsys):
    loads = shared_lm_loads()
    with dg.DagsterInstance.ephemeral() as instance:
        timings = run_demo(instance=instance, print_fn=lambda _: None)
        # world, 2 model chains and toy-gemma2's twin's, 2 x 5 SAE variants and the twin's 3, catalog
        assert len(timings) == 5 + 2 * 5 + 3
        # one LM load per model, shared by the metrics and the steering of its SAEs (26 loads unshared)
        assert shared_lm_loads() - loads == 3
        runs = instance.get_runs()
        assert all(r.is_success for r in runs)
        evaluations = [e for r in runs for e in instance.all_logs(r.run_id)
                       if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
        # activation checks x 3 models, SAE checks x 13 SAEs, the patching check x 2 patched variants x 2 trained
        # models (a twin is not patched), instrument_validity's and proxies' once
        assert len(evaluations) == 3 * 3 + 12 * 13 + 2 * 2 + 2
        assert all(e.dagster_event.event_specific_data.passed for e in evaluations)

    lake = Lake(tiny_config.parent / "lake")
    assert lake.partitions("activations", "model") == ["toy-gemma2", "toy-gemma2-random", "toy-qwen2"]
    for slug in ("toy-gemma2", "toy-gemma2-random", "toy-qwen2"):
        path = lake.path("activations", model=slug)
        assert json.loads((path / "_manifest.json").read_text())["tokens"] == 1500
        assert sum(pq.ParquetFile(f).metadata.num_rows for f in path.glob("*.parquet")) == 1500
        assert (lake.path("models", model=slug) / "model.safetensors").is_file()

    assert cli(["sql", "select model, count(*) as n from activations group by 1 order by 1", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["model,n", "toy-gemma2,1500", "toy-gemma2-random,1500",
                                                    "toy-qwen2,1500"]
    assert cli(["sql", "select count(*) as n, min(d_model) as d from lm_eval", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 3, "d": 32}]
    assert cli(["sql", "create table x as select 1"]) == 1  # the catalog is read-only
    assert "read-only" in capsys.readouterr().err

    _check_tables_are_declared_assets_with_their_schema(lake)
    _check_dashboards(lake, capsys)  # before any check materializes more partitions than the demo did
    _check_plan(lake, tiny_config, capsys)
    _check_steering(lake, capsys, tiny_config)
    _check_selection(lake, capsys)
    _check_rank_agreement(lake, capsys)
    _check_selection_lift_and_report(lake)
    _check_patching(lake, capsys, tiny_config)
    _check_interpretability(lake, tiny_config)
    _check_control(lake, capsys, tiny_config)
    _check_reliability_and_contextual_share(lake)
    _check_oracles(lake, tiny_config)
    _check_truths_and_proxies(lake)

    # a crash halfway through a rerun leaves the previous partition exactly as it was
    before = {f.name: f.read_bytes() for f in lake.path("activations", model="toy-gemma2").iterdir()}
    import sae_models.lm

    real = sae_models.lm.iter_activations

    def crash_midway(*args, **kwargs):
        gen = real(*args, **kwargs)
        yield next(gen)
        raise RuntimeError("simulated crash")

    sae_models.lm.iter_activations = crash_midway
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions("models", ["toy-gemma2"])
            result = _run(instance, "model_chain", "toy-gemma2")
    finally:
        sae_models.lm.iter_activations = real
    assert not result.success
    after = {f.name: f.read_bytes() for f in lake.path("activations", model="toy-gemma2").iterdir()}
    assert after == before


def _check_dashboards(lake: Lake, capsys) -> None:
    """Every SAE, baseline, oracle and twin's dictionary has its dashboard, listed in the lake's index; one opens
    in Chromium with as many latents as latent_stats holds, and the report page opens beside it."""
    from selenium.webdriver.common.by import By

    from tests.browser import chromium, open_page, screenshot_spread

    pairs = [(m, s) for m in lake.partitions("sae_metrics", "model") for s in lake.partitions(f"sae_metrics/model={m}",
                                                                                             "sae")]
    assert len(pairs) >= 13
    for model, sae in pairs:
        site = lake.path("feature_dashboards", model=model, sae=sae)
        assert {"index.html", "latent.html", "data"} <= {f.name for f in site.iterdir()}
        assert lake.read_table("latent_profiles", model=model, sae=sae).num_rows == \
            lake.read_table("latent_stats", model=model, sae=sae).num_rows
    index = (lake.root / "feature_dashboards" / "index.html").read_text()
    assert [(m, s) for m, s in pairs if f"model={m}/sae={s}/index.html" not in index] == []
    latents = lake.read_table("latent_stats", model="toy-gemma2", sae="topk-k4").num_rows
    with chromium() as session:
        assert open_page(session, lake.path("feature_dashboards", model="toy-gemma2", sae="topk-k4") / "index.html") \
            == []
        assert session.find_element(By.ID, "count").text == str(latents)
        assert screenshot_spread(session) > 20
        assert open_page(session, lake.root / "reports" / "report.html") == []
        assert "sae-lake report" in session.find_element(By.TAG_NAME, "h1").text
    from sae_dashboard.neuronpedia.neuronpedia_dashboard import NeuronpediaDashboardBatch

    out = lake.root.parent / "neuronpedia"
    assert cli(["export", "neuronpedia", "--out", str(out), "--model", "toy-gemma2", "--sae", "topk-k4"]) == 0
    assert capsys.readouterr().out == f"{out / 'toy-gemma2' / 'topk-k4'}: {latents} latents\n"
    batch = json.loads((out / "toy-gemma2" / "topk-k4" / "batch-0.json").read_text())
    assert NeuronpediaDashboardBatch(**batch).to_dict() == batch
    assert [f["feature_index"] for f in batch["features"]] == list(range(min(latents, 128)))


def _check_oracles(lake: Lake, config) -> None:
    """An oracle dictionary and its fully corrupted copy go through every per-SAE asset with the checks passing
    (an oracle is not held to the explained-variance floor); the clean one recovers the concepts better."""
    from sae_models.sae import load_sae

    before = config.read_text()  # the checks before this one leave a dead judge endpoint in it
    # a neutral prompt of the toy language, so some concept fires in it (the default is out of its vocabulary)
    config.write_text(tiny_toml({"selection": {"prompt": "the furry puppy was happy ."},
                                 "oracle": {"levels": [0, 1], "seeds": [0]}}))
    names = ["oracle-0-s0", "oracle-1-s0"]
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("models", ["toy-gemma2"])
        instance.add_dynamic_partitions("saes", names)
        for name in names:
            result = _run(instance, "sae_sweep", pair_key("toy-gemma2", name))
            assert result.success, _failure_messages(result)
            checks = [e.dagster_event.event_specific_data for e in instance.all_logs(result.run_id)
                      if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
            assert checks and all(c.passed for c in checks)
    f1 = {}
    for name in names:
        (metrics,) = lake.read_table("sae_metrics", model="toy-gemma2", sae=name).to_pylist()
        concepts = load_sae(lake.fetch("saes", model="toy-gemma2", sae=name)).cfg.metadata["concepts"]
        assert metrics["architecture"] == "oracle" and metrics["d_sae"] == len(concepts) >= 20
        assert lake.read_table("steering_summary", model="toy-gemma2", sae=name).num_rows == 1
        steered = lake.read_table("steering_generations", model="toy-gemma2", sae=name).column("latent")
        truth = lake.read_table("true_steerability", model="toy-gemma2", sae=name)
        assert sorted(truth.column("latent").to_pylist()) == sorted(set(steered.to_pylist()))
        assert all(concepts[r["latent"]] == r["concept"] for r in truth.to_pylist())  # the concept it was built for
        recovery = lake.read_table("concept_recovery", model="toy-gemma2", sae=name)
        f1[name] = float(recovery.column("best_f1").to_numpy().mean())
    assert f1["oracle-0-s0"] > f1["oracle-1-s0"]  # equal if the corruption changed nothing
    config.write_text(before)


def _check_truths_and_proxies(lake: Lake) -> None:
    """true_interpretability scores exactly autointerp's latents with its CONCEPT100 flags; instrument_validity
    holds every instrument against its truth per group of latents; proxies has every model, metric and target."""
    from sae_models.evals.proxies import METRICS, TARGETS
    from sae_models.toyworld.grammar import world_version

    for model, sae in (("toy-gemma2", "topk-k4"), ("toy-qwen2", "pca")):
        truth = {r["latent"]: r for r in lake.read_table("true_interpretability", model=model, sae=sae).to_pylist()}
        scored = {r["latent"]: r["concept100"] for r in lake.read_table("autointerp", model=model, sae=sae).to_pylist()}
        assert {k: r["concept100"] for k, r in truth.items()} == scored
        assert all(0 <= r["true_interpretability"] <= r["best_in_sample"] <= 1 for r in truth.values()
                   if r["true_interpretability"] is not None)
    validity = lake.read_table("instrument_validity").to_pylist()
    groups = {(r["instrument"], r["against"], r["latents"]) for r in validity if r["against"] != "corruption"}
    assert {("mu", "true_interpretability", g) for g in ("all", "single_word", "other")} <= groups
    assert ("g", "true_steerability", "all") in groups
    mu = next(r for r in validity if (r["instrument"], r["latents"]) == ("mu", "all") and r["against"] != "corruption")
    assert 0 < mu["latents_per_sae"] <= 6 and (mu["tau_disjoint"] is None or -1 <= mu["tau_disjoint"] <= 1)
    assert {r["world_version"] for r in validity} == {world_version()}
    assert {r["judge_model"] for r in validity} == {"toyworld-reader-v4"}
    proxies = {(r["model"], r["metric"], r["target"]) for r in lake.read_table("proxies").to_pylist()}
    assert proxies == {(m, x, t) for m in ("toy-gemma2", "toy-qwen2") for x in METRICS for t in TARGETS}


def _check_tables_are_declared_assets_with_their_schema(lake: Lake) -> None:
    """Every table in the lake is declared, written by the asset of its name, partitioned by its declared keys,
    and every one of its files has the declared schema (the same column types in every partition)."""
    asset_keys = {k.to_user_string() for k in defs.get_repository_def().asset_graph.get_all_asset_keys()}
    tables = lake.tables()
    assert set(tables) == set(TABLES)
    for name in tables:
        spec = TABLES[name]
        assert name in asset_keys, f"lake table {name} has no asset"
        for file in (lake.root / name).rglob("*.parquet"):
            keys = tuple(p.split("=")[0] for p in file.relative_to(lake.root / name).parts[:-1])
            assert keys == spec.keys, (name, file)
            assert not spec.mismatches(pq.read_schema(file)), (name, file, spec.mismatches(pq.read_schema(file)))
            if name in STAGE:  # built from settings: their fingerprint lies beside the data
                assert json.loads((file.parent / "_settings.json").read_text())["fingerprint"]


def _check_selection(lake: Lake, capsys) -> None:
    """Every live latent has its output score and DeltaC; selection starts from the same g as steering, picks a
    set of the steered concepts, and the SQL of the README answers."""
    for slug in ("toy-gemma2", "toy-qwen2"):
        for name in ("relu-0.1", "topk-k4", "gated-0.1", "pca", "neuron"):
            stats = lake.read_table("latent_stats", model=slug, sae=name)
            live = int((stats.column("firing_frequency").to_numpy() > 0).sum())
            scores = lake.read_table("feature_scores", model=slug, sae=name)
            assert scores.num_rows == live and sorted(scores.column("up_rank").to_pylist()) == list(range(1, live + 1))
            (row,) = lake.read_table("selection", model=slug, sae=name).to_pylist()
            (steer,) = lake.read_table("steering_summary", model=slug, sae=name).to_pylist()
            concepts = set(lake.read_table("steering_concepts", model=slug, sae=name).column("latent").to_pylist())
            assert row["n_pool"] == len(concepts) and row["g"] == pytest.approx(steer["g"])
            assert set(row["chosen_latents"]) <= concepts and row["size"] == len(row["chosen_latents"]) >= 1
            assert row["g_dtc"] <= row["g_dtc_chosen_on_test"] + 1e-12  # the choice on test is the optimistic one
    assert cli(["sql", "select model, sae, g, g_out, g_dtc, gain from selection order by 1, 2", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "model,sae,g,g_out,g_dtc,gain" and len(lines) == 1 + 10 + 3


def _check_rank_agreement(lake: Lake, capsys) -> None:
    """tau-b of mu vs g over the 6 SAEs (baselines excluded) equals scipy's on the sae_summary rows, with an
    interval and a p-value; by-model groups hold 3 SAEs; the catalog's macro answers through `sae-lake sql`."""
    from scipy import stats

    query = "select mu, g, concept_f1 from sae_summary where not is_baseline and control_of is null"
    assert cli(["sql", query, "--format", "json"]) == 0
    saes = json.loads(capsys.readouterr().out)
    rows = {(r["comparison"], r["grouping"], r["group"]): r for r in lake.read_table("rank_agreement").to_pylist()}
    for comparison, x, y in (("mu vs g", "mu", "g"), ("concept_f1 vs mu", "concept_f1", "mu")):
        overall = rows[(comparison, "overall", "all")]
        assert overall["n"] == len(saes) == 6 and overall["pairs"] == 15
        expected = stats.kendalltau([r[x] for r in saes], [r[y] for r in saes]).statistic
        if math.isnan(expected):  # a constant side (the tiny SAEs' g can be): null with the reason, no p-value
            assert overall["tau_b"] is None and "constant" in overall["note"] and overall["p_value"] is None
        else:
            assert overall["tau_b"] == pytest.approx(expected, abs=1e-12) and 0 <= overall["p_value"] <= 1
    assert rows[("concept_f1 vs mu", "overall", "all")]["tau_b"] is not None  # the truth check is defined here
    assert not any(r["controls_included"] for r in rows.values())  # the twin's 2 SAEs are not items
    assert rows[("mu vs g", "model", "toy-gemma2")]["n"] == 3
    assert {("mu vs g", "psi", axis) for axis in ("architecture", "sparsity", "model", "Psi")} <= set(rows)
    assert rows[("mu vs g", "psi", "model")]["tau_b"] is None  # two models: no group of 3 along the model axis
    query = "select grp.comparison as c, n, tau_b from kendall_tau_b('rank_groups') where grp.grouping = 'overall'"
    assert cli(["sql", query, "--format", "json"]) == 0
    by_comparison = {r["c"]: r for r in json.loads(capsys.readouterr().out)}
    assert by_comparison["concept_f1 vs mu"]["tau_b"] == pytest.approx(
        rows[("concept_f1 vs mu", "overall", "all")]["tau_b"], abs=1e-12)


def _check_selection_lift_and_report(lake: Lake) -> None:
    """Table 2 averages each model's SAEs (baselines in their own rows) exactly as sae_summary holds them;
    the report shows the three tables, the ground truth and figures that exist."""
    summary = lake.read_table("sae_summary").to_pylist()
    lift = {(r["model"], r["dictionaries"]): r for r in lake.read_table("selection_lift").to_pylist()}
    models = ("toy-gemma2", "toy-gemma2-random", "toy-qwen2", "all models")
    assert set(lift) == {(m, d) for m in models for d in ("SAEs", "baselines")}
    for (model, kind), row in lift.items():
        mine = [r for r in summary if r["is_baseline"] == (kind == "baselines")
                and (r["model"] == model or (model == "all models" and r["control_of"] is None))
                and None not in (r["g"], r["g_out"], r["g_dtc"])]
        assert row["n"] == len(mine)
        for key in ("g", "g_out", "g_dtc"):
            assert row[key] == pytest.approx(sum(r[key] for r in mine) / len(mine), abs=1e-12)
        gains = [r["gain"] for r in mine if r["gain"] is not None]
        assert row["n_gain"] == len(gains)
        if gains:
            assert row["mean_gain"] == pytest.approx(sum(gains) / len(gains), abs=1e-9)
    report = (lake.root / "reports" / "report.md").read_text()
    for heading in ("Table 1: mu vs g", "Table 2", "Table 3: mu vs gain", "Against the ground truth",
                    "Baselines beside the SAEs", "Instrument reliability", "Contextual latents",
                    "Latent level: where mu vs g comes from", "By the shape of the steered latent's explanation"):
        assert heading in report
    for png in ("mu_vs_g.png", "tau_by_axis.png"):
        assert (lake.root / "reports" / png).read_bytes()[:4] == b"\x89PNG"


def _check_reliability_and_contextual_share(lake: Lake) -> None:
    """instrument_reliability covers each trained model's SAEs (not its baselines, not the twin) for every
    instrument and pair; contextual_share is the contextual fraction of exactly the CONCEPT100 latents."""
    from sae_models.evals.reliability import PAIRS

    rows = lake.read_table("instrument_reliability").to_pylist()
    single = {(r["model"], r["instrument"]): r for r in rows if r["partner"] is None}
    assert {m for m, _ in single} == {"toy-gemma2", "toy-qwen2"}
    assert {i for _, i in single} == {"mu", "mu_balanced", "mu_simulation", "g", "g_lift", "g_dtc", "gain",
                                      "true_interpretability", "true_steerability"}
    assert all(r["n_saes"] == 3 and r["splits"] == 200 for r in single.values())
    assert single[("toy-gemma2", "mu")]["units"] == 6  # n_concept latents per SAE
    pairs = [r for r in rows if r["partner"] is not None]
    assert len(pairs) == 2 * len(PAIRS) and all(r["tau_ceiling"] is None or 0 <= r["tau_ceiling"] <= 1 for r in pairs)
    summary = {(r["model"], r["sae"]): r for r in lake.read_table("sae_summary").to_pylist()}
    for key in (("toy-gemma2", "topk-k4"), ("toy-qwen2", "pca")):
        stats = lake.read_table("latent_stats", model=key[0], sae=key[1]).to_pylist()
        contextual = {r["latent"]: r["contextual"] for r in stats}
        assert all((r["token_eta2"] is None) == (r["firing_frequency"] == 0) for r in stats)
        concept100 = [r["latent"] for r in lake.read_table("autointerp", model=key[0], sae=key[1]).to_pylist()
                      if r["concept100"]]
        share = sum(contextual[f] for f in concept100) / len(concept100)
        assert summary[key]["contextual_share"] == pytest.approx(share, abs=1e-12)
    _check_latent_level(lake, summary)


def _check_latent_level(lake: Lake, summary: dict) -> None:
    """sql/latent_level.sql: per trained model, Pearson r over its SAEs' steered latents of the detection score
    with the steering scores, as numpy computes it from the tables."""
    import numpy as np

    from assets.lakehouse.sql import analysis_connection

    with analysis_connection(lake, lake.tables(), ["steering_concepts", "autointerp", "sae_summary"], []) as con:
        rows = con.sql(query_text("latent_level")).pl().to_dicts()
    assert {(r["model"], r["score"]) for r in rows} == {(m, s) for m in ("toy-gemma2", "toy-qwen2")
                                                        for s in ("g", "g_unsteered", "g - g_unsteered")}
    for model in ("toy-gemma2", "toy-qwen2"):
        mu, g, g0 = [], [], []
        for (m, sae), row in summary.items():
            if m != model or row["is_baseline"] or row["control_of"]:
                continue
            detection = {r["latent"]: r["detection_score"] for r in lake.read_table("autointerp", model=m, sae=sae)
                         .to_pylist()}
            for c in lake.read_table("steering_concepts", model=m, sae=sae).to_pylist():
                if None not in (detection.get(c["latent"]), c["test_hm"], c["unsteered_test_hm"]):
                    mu.append(detection[c["latent"]]), g.append(c["test_hm"]), g0.append(c["unsteered_test_hm"])
        mine = {r["score"]: r for r in rows if r["model"] == model}
        assert mine["g"]["latents"] == len(mu) > 0
        for score, values in (("g", g), ("g_unsteered", g0), ("g - g_unsteered", np.subtract(g, g0))):
            expected = np.corrcoef(mu, values)[0, 1] if np.std(values) > 0 and np.std(mu) > 0 else None
            assert mine[score]["r"] == (pytest.approx(expected, abs=1e-9) if expected is not None else None)


def _check_patching(lake: Lake, capsys, config) -> None:
    """Patching ran for the variants [patching] names only, one row per threshold; greedy sets shrink as the
    threshold grows; PCA (an exact basis) patched in full is what replacing the whole hook output gives, on both
    the resumed (resid_post) and the rerun-prefix (mlp_out) path; the report shows the frontiers; and a model
    below min_ioi_accuracy is refused by the blocking check with one line."""
    assert sorted(lake.partitions("patching/model=toy-qwen2", "sae")) == ["pca", "topk-k4"]
    for slug in ("toy-gemma2", "toy-qwen2"):
        for name in ("pca", "topk-k4"):
            rows = sorted(lake.read_table("patching", model=slug, sae=name).to_pylist(), key=lambda r: r["threshold"])
            assert [r["threshold"] for r in rows] == [0.05, 0.5, 5.0]
            assert all(a["n_latents"] >= b["n_latents"] for a, b in zip(rows, rows[1:], strict=False))
            assert all(r["kl_fit"] <= r["threshold"] for r in rows if r["reached"])
            assert all(r["n_latents"] <= r["n_candidates"] and len(r["latents"]) == r["n_latents"] for r in rows)
            if name == "pca":
                _check_pca_patched_in_full(lake, slug, rows[0])
    assert (lake.root / "reports" / "patching_frontiers.png").read_bytes()[:4] == b"\x89PNG"
    assert "Feature patching on IOI" in (lake.root / "reports" / "patching.md").read_text()
    assert "feature patching on IOI" in (lake.root / "reports" / "report.md").read_text()
    assert cli(["sql", query_text("patching_frontier"), "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 2 * 2 * 3

    edit_toml(config, {"patching": {"min_ioi_accuracy": 0.8}})
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("models", ["toy-qwen2"])
        instance.add_dynamic_partitions("saes", ["pca"])
        result = _run(instance, "sae_sweep", pair_key("toy-qwen2", "pca"))
        (check,) = [e.dagster_event.event_specific_data for e in instance.all_logs(result.run_id)
                    if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
                    and e.dagster_event.event_specific_data.check_name == "patching_model_solves_ioi"]
    assert not result.success and not check.passed
    assert "toy-qwen2 answers IOI at" in check.description and "min_ioi_accuracy 0.8" in check.description
    # the demo goes on past a refusal with one line, and stops on any other failure
    assert _failure(result, "sae_sweep[toy-qwen2|pca]") == (
        f"demo: sae_sweep[toy-qwen2|pca]: not patched: {check.description}", None)
    edit_toml(config, {"patching": {"min_ioi_accuracy": 0.0}})


def _check_pca_patched_in_full(lake: Lake, slug: str, row: dict) -> None:
    """At resid_post the whole state patched is the counterfactual run (KL ~ 0). At mlp_out it is not (the
    layer's attention and every layer below still see the clean prompt): there the batched KL must equal full
    forward passes with every code replaced, one held-out prompt at a time."""
    import numpy as np

    from sae_models.evals.patching import naive_patched_kl, toyworld_ioi_pairs
    from sae_models.lm import load_lm
    from sae_models.sae import load_sae

    settings = load_settings()
    entry, cfg = next(m for m in settings.models if m.slug == slug), settings.patching
    assert row["n_candidates"] == 2 * 32 and row["reached"]
    if entry.hook == "resid_post":
        assert row["kl_all_patched"] < 1e-4
        return
    lm = load_lm(str(lake.path("models", model=slug)))
    sae = load_sae(lake.fetch("saes", model=slug, sae="pca"))
    _, held = toyworld_ioi_pairs(cfg.n_pairs, cfg.n_eval_pairs, cfg.seed)
    naive = [naive_patched_kl(lm, sae, entry.layer, entry.hook, pair, range(2 * 32)) for pair in held]
    assert row["kl_all_patched"] == pytest.approx(float(np.mean(naive)), rel=1e-3, abs=1e-5)


def _check_plan(lake: Lake, config, capsys) -> None:
    """`sae-lake plan`'s counts are what the demo then did: exact where lake.toml decides them (tokens, SAEs,
    generations, rating requests), upper bounds where the data decide (scored latents; autointerp's requests, 4 per
    scored latent)."""
    from assets.lakehouse.registry import variants_for
    from assets.plan import plan

    settings = load_settings(config)
    plans = {p.model: p for p in plan(settings)}
    assert sorted(plans) == lake.partitions("activations", "model")
    for slug, planned in plans.items():
        names = [v.name for v in variants_for(settings, slug)]
        assert planned.tokens == type(planned.tokens)(sum(
            pq.ParquetFile(f).metadata.num_rows for f in lake.path("activations", model=slug).glob("*.parquet")))
        assert sum(planned.saes.values()) == len(names)
        summaries = [lake.read_table("steering_summary", model=slug, sae=n).to_pylist()[0] for n in names]
        assert planned.generations.value == sum(
            lake.read_table("steering_generations", model=slug, sae=n).num_rows for n in names)
        assert planned.judge_requests["rate"].value == sum(r["judge_calls"] + r["judge_cached"] for r in summaries)
        scored = sum(len(set(lake.read_table("latent_examples", model=slug, sae=n).column("latent").to_pylist()))
                     for n in names)
        assert 0 < scored <= planned.scored_latents.value
        asked = sum(r["judge_calls"] + r["judge_cached"] for n in names
                    for r in lake.read_table("interpretability", model=slug, sae=n).to_pylist())
        assert asked == 4 * scored <= sum(planned.judge_requests[t].value for t in ("explain", "detect", "simulate"))
    assert cli(["plan"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("activation documents: 120 (every model reads the same)") and "| toy-qwen2 |" in out


def _check_steering(lake: Lake, capsys, config) -> None:
    """Every SAE and baseline has g in [0, 2] beside its unsteered baseline, from 3 concepts x 4 instructions x
    (0, 0.5, 2); the SQL of the README answers; a rerun of the ratings asks the judge nothing new; a dead
    judge endpoint fails the step with one line and leaves the tables as they were."""
    for slug in ("toy-gemma2", "toy-qwen2"):
        for name in ("relu-0.1", "topk-k4", "gated-0.1", "pca", "neuron"):
            generations = lake.read_table("steering_generations", model=slug, sae=name)
            assert generations.num_rows == 3 * 4 * 3
            (row,) = lake.read_table("steering_summary", model=slug, sae=name).to_pylist()
            assert row["n_concepts"] == 3 and 0 <= row["g"] <= 2 and 0 <= row["g_unsteered"] <= 2
            assert row["judge_calls"] + row["judge_cached"] == 3 * generations.num_rows
    assert cli(["sql", "select model, sae, g from steering_summary order by 1, 2", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "model,sae,g" and len(lines) == 1 + 10 + 3

    key = dg.MultiPartitionKey({"model": "toy-gemma2", "sae": "topk-k4"})
    generations = lake.read_table("steering_generations", model="toy-gemma2", sae="topk-k4")
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("models", ["toy-gemma2"])
        instance.add_dynamic_partitions("saes", ["topk-k4"])
        assert defs.resolve_job_def("sae_sweep").execute_in_process(
            instance=instance, partition_key=key, asset_selection=[dg.AssetKey("steering"),
            dg.AssetKey("steering_concepts"), dg.AssetKey("steering_summary")]).success
    (row,) = lake.read_table("steering_summary", model="toy-gemma2", sae="topk-k4").to_pylist()
    assert row["judge_calls"] == 0 and row["judge_cached"] == 3 * generations.num_rows
    assert lake.read_table("steering_generations", model="toy-gemma2", sae="topk-k4").equals(generations)

    # a dead judge endpoint: one line naming it, and every steering table as it was
    tables = ("steering", "steering_concepts", "steering_summary")
    before = {t: lake.read_table(t, model="toy-gemma2", sae="topk-k4") for t in tables}
    text = config.read_text()
    edit_toml(config, {"judge": DEAD_JUDGE})
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions("models", ["toy-gemma2"])
            instance.add_dynamic_partitions("saes", ["topk-k4"])
            down = defs.resolve_job_def("sae_sweep").execute_in_process(
                instance=instance, partition_key=key, raise_on_error=False,
                asset_selection=[dg.AssetKey(t) for t in tables])
    finally:
        config.write_text(text)
    assert not down.success
    (message,) = _failure_messages(down)
    assert "toy-gemma2 / topk-k4: judge endpoint http://127.0.0.1:9/v1" in message
    refusal, error = _failure(down, "steering[x]")
    assert refusal is None and re.match(r"demo: run steering\[x\] failed(.|\n)*judge endpoint", error)
    assert all(lake.read_table(t, model="toy-gemma2", sae="topk-k4").equals(before[t]) for t in tables)


def _check_interpretability(lake: Lake, config) -> None:
    """Every SAE and baseline has scores and a mu; a rerun asks the judge nothing new; a dead endpoint fails
    the step with one clear line and leaves the scores as they were."""
    variants = ["relu-0.1", "topk-k4", "gated-0.1", "pca", "neuron"]
    for slug in ("toy-gemma2", "toy-qwen2"):
        for name in variants:
            scores = lake.read_table("autointerp", model=slug, sae=name)
            (row,) = lake.read_table("interpretability", model=slug, sae=name).to_pylist()
            assert scores.num_rows == row["n_scored"] > 0 and row["n_concept"] == min(6, row["n_scored"])
            assert 0 <= row["mu"] <= 1 and row["judge"] == "toyworld:toyworld-reader-v4"
    report = lake.read_table("interpretability_by_kind")
    assert set(report.column("kind").to_pylist()) == {"relu", "topk", "gated", "pca", "neuron"}
    assert (lake.root / "reports" / "interpretability_by_kind.png").read_bytes()[:4] == b"\x89PNG"

    key = dg.MultiPartitionKey({"model": "toy-gemma2", "sae": "topk-k4"})
    before = lake.read_table("autointerp", model="toy-gemma2", sae="topk-k4")
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("models", ["toy-gemma2"])
        instance.add_dynamic_partitions("saes", ["topk-k4"])
        rerun = _run_autointerp(instance, key)
        assert rerun.success
        (row,) = lake.read_table("interpretability", model="toy-gemma2", sae="topk-k4").to_pylist()
        assert row["judge_calls"] == 0 and row["judge_cached"] > 0  # all answers from lake/judge_cache
        assert lake.read_table("autointerp", model="toy-gemma2", sae="topk-k4").equals(before)

        edit_toml(config, {"judge": DEAD_JUDGE})
        down = _run_autointerp(instance, key)
    assert not down.success
    (message,) = _failure_messages(down)
    assert "toy-gemma2 / topk-k4: judge endpoint http://127.0.0.1:9/v1" in message and "after 1 retries" in message
    assert lake.read_table("autointerp", model="toy-gemma2", sae="topk-k4").equals(before)


def _check_control(lake: Lake, capsys, config) -> None:
    """toy-gemma2's twin: the same config and tokenizer, untrained weights, marked in lm_eval and sae_summary;
    its 3 dictionaries beside toy-gemma2's in control_contrast, each score the mean of the units the contrast
    resamples; control_separation over the 2 SAE pairs; the report's section; and [control] in_rank_analysis
    puts the twin's SAEs into the rank analysis, with the column that says so."""
    trained, twin = (lake.path("models", model=m) for m in ("toy-gemma2", "toy-gemma2-random"))
    assert json.loads((twin / "config.json").read_text()) == json.loads((trained / "config.json").read_text())
    assert (twin / "tokenizer.json").read_bytes() == (trained / "tokenizer.json").read_bytes()
    (row,) = lake.read_table("lm_eval", model="toy-gemma2-random").to_pylist()
    assert (row["control_of"], row["init_seed"], row["steps"]) == ("toy-gemma2", 0, 0)
    assert lake.read_table("lm_eval", model="toy-gemma2").to_pylist()[0]["control_of"] is None
    assert not lake.partitions("patching/model=toy-gemma2-random", "sae")

    summary = {(r["model"], r["sae"]): r for r in lake.read_table("sae_summary").to_pylist()}
    assert {s for (m, s), r in summary.items() if r["control_of"] == "toy-gemma2"} == {"relu-0.1", "topk-k4", "pca"}
    assert {m for (m, _), r in summary.items() if r["control_of"] is None} == {"toy-gemma2", "toy-qwen2"}
    contrast = lake.read_table("control_contrast").to_pylist()
    dictionaries = ("relu-0.1", "topk-k4", "pca")
    assert {(r["sae"], r["metric"]) for r in contrast} == {(s, m) for s in dictionaries for m in METRICS}
    for r in contrast:
        assert (r["model"], r["control"]) == ("toy-gemma2", "toy-gemma2-random")
        twin_row, trained_row = summary[("toy-gemma2-random", r["sae"])], summary[("toy-gemma2", r["sae"])]
        assert twin_row["sparsity_index"] == trained_row["sparsity_index"] == r["sparsity_index"]
        assert (r["l0_trained"], r["l0_twin"]) == (trained_row["l0"], twin_row["l0"])
        if r["metric"] not in summary[("toy-gemma2", r["sae"])]:  # the steering scores per concept
            continue
        for side, model in (("trained", "toy-gemma2"), ("twin", "toy-gemma2-random")):
            assert r[side] == pytest.approx(summary[(model, r["sae"])][r["metric"]], abs=1e-6), (r, side)
        assert r["paired"] == (r["metric"] == "concept_f1")
        assert r["ci_low"] is None or r["ci_low"] <= r["ci_high"]
    by_metric = {(r["sae"], r["metric"]): r for r in contrast}
    for name in ("relu-0.1", "topk-k4", "pca"):  # g - g_unsteered per concept averages to the summary's
        g, lift = by_metric[(name, "g")], by_metric[(name, "g_minus_unsteered")]
        assert lift["trained"] == pytest.approx(
            g["trained"] - summary[("toy-gemma2", name)]["g_unsteered"], abs=1e-6)
    separation = {r["metric"]: r for r in lake.read_table("control_separation").to_pylist()}
    assert set(separation) == set(METRICS)
    assert all(r["model"] == "toy-gemma2" and r["n_pairs"] == 2 for r in separation.values())
    report = (lake.root / "reports" / "report.md").read_text()
    assert "## Control: trained models against their random-weights twins" in report
    assert "excludes their SAEs" in report
    assert (lake.root / "reports" / "control.png").read_bytes()[:4] == b"\x89PNG"
    assert cli(["sql", query_text("control"), "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(METRICS)
    assert "toy-gemma2, pairs won by the trained SAE - by the twin's, best separator first: " in report
    assert "ground truth concept_f1 " in report and "Not ranked: g, g_dtc, g_minus_unsteered" in report

    edit_toml(config, {"control": {"in_rank_analysis": True}})
    with dg.DagsterInstance.ephemeral() as instance:
        assert defs.resolve_job_def("catalog_refresh").execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("rank_agreement")]).success
    rows = {(r["comparison"], r["grouping"], r["group"]): r for r in lake.read_table("rank_agreement").to_pylist()}
    assert rows[("mu vs g", "overall", "all")]["n"] == 8 and all(r["controls_included"] for r in rows.values())
    assert rows[("mu vs g", "model", "toy-gemma2-random")]["n"] == 2


def _run_autointerp(instance, key):
    return defs.resolve_job_def("sae_sweep").execute_in_process(
        instance=instance, partition_key=key, raise_on_error=False,
        asset_selection=[dg.AssetKey("autointerp"), dg.AssetKey("interpretability")])


def _single_model_config(tiny_config, source: str, layer: int = 1) -> None:
    tiny_config.write_text(tiny_toml({"models": [{"slug": "ext", "source": source, "layer": layer, "tokens": 100}]}))


@pytest.mark.parametrize(("source", "message"), [
    ("/no/such/model/dir", "model source '/no/such/model/dir': no such directory"),
    ("google/gemma-2-2b", "model source 'google/gemma-2-2b': not a local directory"),
])
def test_bad_model_source_fails_its_step_with_one_line(tiny_config, monkeypatch, source, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _single_model_config(tiny_config, source)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("models", ["ext"])
        result = _run(instance, "model_chain", "ext")
    assert not result.success
    (msg,) = _failure_messages(result)
    assert message in msg and "\n" not in msg.strip()
    assert not (tiny_config.parent / "lake" / "lm_eval").exists()


def test_layer_out_of_range_for_a_local_model_is_a_config_error(tiny_config, random_models):
    _single_model_config(tiny_config, str(random_models["gpt2"]), layer=1)
    edit_toml(tiny_config, {"models": {"ext": {"layer": 5}}})
    from assets.lakehouse.config import ConfigError

    with pytest.raises(ConfigError, match=r"layer 5 is out of range for ext \(3 layers"):
        load_settings()


def test_empty_corpus_fails_and_keeps_the_previous_corpus(tiny_config, tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        assert _run(instance, "world").success
        corpus_file = tiny_config.parent / "lake" / "corpus" / "part-00000.parquet"
        before = corpus_file.read_bytes()
        empty = tmp_path / "empty.txt"
        empty.write_text("\n  \n")
        tiny_config.write_text(tiny_toml({"corpus": {"source": str(empty)}}))
        result = _run(instance, "world")
    assert not result.success
    assert f"corpus source '{empty}': no documents (empty corpus)" in _failure_messages(result)[0]
    assert corpus_file.read_bytes() == before


def test_corrupt_shard_is_reported_by_name(tmp_path):
    shard = tmp_path / "part-00000.parquet"
    shard.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(dg.Failure, match="part-00000.parquet: corrupt Parquet shard"):
        _shards(tmp_path)


def test_an_external_sae_lens_directory_is_evaluated_like_ours(tiny_config, tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    external = tmp_path / "downloaded-sae"
    sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=32, d_sae=64, k=4)).save_model(external)
    # an untrained external SAE reconstructs nothing: no explained-variance floor here
    tiny_config.write_text(tiny_toml({"sweep": {"architectures": [], "baselines": [], "min_explained_variance": -10.0},
                                      "external_saes": [{"name": "scope-like", "model": "toy-gemma2",
                                                         "path": str(external)}]}, twins=False))
    with dg.DagsterInstance.ephemeral() as instance:
        timings = run_demo(instance=instance, print_fn=lambda _: None)
        assert "sae_sweep[toy-gemma2|scope-like]" in timings and "sae_sweep[toy-qwen2|scope-like]" not in timings
        instance.add_dynamic_partitions("saes", ["scope-like"])
        other = _run(instance, "sae_sweep", dg.MultiPartitionKey({"model": "toy-qwen2", "sae": "scope-like"}))
    # another model's external SAE is never requested; run by hand, it fails with one line, writing nothing
    assert not other.success
    (message,) = _failure_messages(other)
    assert "toy-qwen2 / scope-like: SAE variant 'scope-like' is an external SAE of 'toy-gemma2'" in message
    lake = Lake(tiny_config.parent / "lake")
    (row,) = lake.read_table("sae_metrics", model="toy-gemma2", sae="scope-like").to_pylist()
    assert row["architecture"] == "external" and row["l0"] == pytest.approx(4.0)
    assert lake.partitions("saes", "model") == ["toy-gemma2"]

    # its folder saying another layer than the model's (toy-gemma2 is read at layer 1): one line, nothing written
    cfg = json.loads((external / "cfg.json").read_text())
    (external / "cfg.json").write_text(json.dumps(cfg | {"metadata": {**cfg["metadata"],
                                                                      "hook_name": "blocks.0.hook_resid_post"}}))
    before = (lake.path("saes", model="toy-gemma2", sae="scope-like") / "sae_weights.safetensors").read_bytes()
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("models", ["toy-gemma2"])
        instance.add_dynamic_partitions("saes", ["scope-like"])
        moved = _run(instance, "sae_sweep", dg.MultiPartitionKey({"model": "toy-gemma2", "sae": "scope-like"}))
    assert not moved.success
    (message,) = _failure_messages(moved)
    assert ("external SAE scope-like: its folder says it was trained at layer 0, but toy-gemma2 is read at "
            "layer 1") in message
    assert (lake.path("saes", model="toy-gemma2", sae="scope-like") / "sae_weights.safetensors").read_bytes() == before


def test_demo_time_estimate_uses_each_jobs_own_runs_and_names_untimed_ones():
    from assets.demo import _eta

    plan = [("world", None), ("model_chain", "a"), ("sae_sweep", "a|x"), ("sae_sweep", "a|y"),
            ("catalog_refresh", None)]
    assert _eta({"world": 5.0, "model_chain[a]": 100.0}, plan[2:]) == "catalog_refresh, sae_sweep not timed yet"
    assert _eta({"world": 5.0, "model_chain[a]": 100.0, "sae_sweep[a|x]": 60.0}, plan[3:]) == (
        "about 60 s left (+ catalog_refresh, not timed yet)")
    timed = {"world": 5.0, "model_chain[a]": 100.0, "sae_sweep[a|x]": 60.0, "sae_sweep[a|y]": 70.0,
             "catalog_refresh": 1.0}
    more = plan[:4] + [("sae_sweep", "b|x"), ("sae_sweep", "b|y")]
    assert _eta(dict(list(timed.items())[:4]), more[4:]) == "about 2 min left"  # 2 x the mean of 60 and 70 s
    assert _eta(dict(list(timed.items())[:4]), more[4:], workers=2) == "about 65 s left"  # shared by two workers


def test_demo_runs_an_sae_after_its_models_chain_and_the_catalog_after_every_run():
    from assets.demo import _next_ready, _waits_for, label_of

    a_x, b_x = pair_key("a", "x"), pair_key("b", "x")
    plan = [("world", None), ("model_chain", "a"), ("model_chain", "b"), ("sae_sweep", a_x), ("sae_sweep", b_x),
            ("catalog_refresh", None)]
    assert _waits_for(plan[4], plan) == {"model_chain[b]"}
    assert _waits_for(plan[1], plan) == {"world"} and _waits_for(plan[0], plan) == set()
    assert _waits_for(plan[5], plan) == {label_of(item) for item in plan[:5]}
    # with b's chain done and a's still running, b's SAE goes first, though a's comes first in the plan
    assert _next_ready(plan[3:], plan, {"world", "model_chain[b]"}) == ("sae_sweep", b_x)
    assert _next_ready(plan[3:], plan, {"world"}) is None


def test_demo_schedule_starts_no_run_after_a_failure_and_lets_the_runs_under_way_finish():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from assets.demo import RunOutcome, _follow, _schedule, label_of

    plan = [("world", None), ("model_chain", "a"), ("model_chain", "b"), ("sae_sweep", pair_key("a", "x")),
            ("sae_sweep", pair_key("b", "x")), ("catalog_refresh", None)]
    started, b_may_end = [], threading.Event()

    def run(item):
        started.append(label_of(item))
        if item == ("model_chain", "a"):
            raise RuntimeError("worker lost")  # as a dead worker's future reports it
        b_may_end.wait(10)  # b is under way when a fails
        return RunOutcome(label_of(item), 1.0)

    printed = []
    with ThreadPoolExecutor(2) as pool:
        b_may_end.set()  # world
        outcomes = _schedule(plan, 2, lambda item: pool.submit(run, item))
        first = next(outcomes)
        b_may_end.clear()
        with pytest.raises(SystemExit, match=r"demo: run model_chain\[a\] failed: RuntimeError\('worker lost'\)"):
            _follow(_releasing_b_on_error(outcomes, b_may_end), plan[1:], printed.append, workers=2)
    assert first.label == "world" and started == ["world", "model_chain[a]", "model_chain[b]"]
    assert printed == ["demo: model_chain[a] failed; no new run starts, the runs under way finish first",
                       "[2/5] model_chain[b] 1.0 s, catalog_refresh, sae_sweep not timed yet"]


def _releasing_b_on_error(outcomes, b_may_end):
    for outcome in outcomes:
        if outcome.error:
            b_may_end.set()
        yield outcome


def test_the_demo_raises_the_gpu_pool_for_its_workers_puts_it_back_and_frees_a_dead_workers_run():
    from dagster._core.storage.dagster_run import DagsterRun

    from assets.demo import DEMO_TAG, _pool_slots

    with dg.DagsterInstance.ephemeral() as instance:
        storage = instance.event_log_storage
        storage.set_concurrency_slots("gpu", 1)
        instance.add_run(DagsterRun(job_name="sae_sweep", run_id="left-by-a-dead-worker",
                                    status=dg.DagsterRunStatus.STARTED, tags={DEMO_TAG: "this-demo"}))
        instance.add_run(DagsterRun(job_name="sae_sweep", run_id="another-demos",
                                    status=dg.DagsterRunStatus.STARTED, tags={DEMO_TAG: "another"}))
        with pytest.raises(KeyboardInterrupt), _pool_slots(instance, "gpu", 2, "this-demo"):
            assert storage.get_concurrency_info("gpu").slot_count == 2
            storage.claim_concurrency_slot("gpu", "left-by-a-dead-worker", "steering")
            raise KeyboardInterrupt
        after = storage.get_concurrency_info("gpu")
        assert after.slot_count == 1 and after.claimed_slots == []
        assert instance.get_run_by_id("left-by-a-dead-worker").status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id("another-demos").status == dg.DagsterRunStatus.STARTED
        storage.delete_concurrency_limit("gpu")  # no limit: nothing to raise, nothing set
        with _pool_slots(instance, "gpu", 2, "this-demo"):
            assert "gpu" not in storage.get_concurrency_keys()
        assert "gpu" not in storage.get_concurrency_keys()
