"""Automation evaluated for real (Dagster's ``evaluate_automation_conditions``) on one swept toy lake: a
settings edit reruns exactly the partitions it shapes; a variant retired from the sweep is never requested
again, for old models or new ones, and stays queryable."""

import dagster as dg
import pytest

from assets.cli import main as cli
from assets.definitions import defs
from assets.defs.models.registry_sensor import model_registry_sensor
from assets.demo import run_demo
from assets.lakehouse.config import load_settings
from tests.tiny_world import tiny_toml

BOTH_MODELS = ("toy-gemma2", "toy-qwen2")


def _sweep(target_l0: list[int], changes: dict | None = None, models: tuple[str, ...] = ("toy-gemma2",)) -> str:
    """TopK SAEs at ``target_l0`` and PCA, without twins (their automation is the same; test_pipeline runs one)."""
    sweep = {"sweep": {"architectures": ["topk"], "baselines": ["pca"], "target_l0": target_l0}}
    return tiny_toml(sweep, changes or {}, models=models, twins=False)


BASE = _sweep([4, 6])
ANALYSIS = ("sae_summary", "rank_agreement", "selection_lift", "control_contrast", "control_separation", "report",
            "catalog")
NOT_SWEEP = ("interpretability_by_kind", *ANALYSIS)  # cross-model, rerun on any update
RATINGS = ("steering", "steering_concepts", "steering_summary")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """toy-gemma2 with topk-k4, topk-k6 and pca, materialized by the demo; the tests below share it in order."""
    config = tmp_path_factory.mktemp("swept") / "lake.toml"
    config.write_text(BASE)
    with pytest.MonkeyPatch.context() as mp, dg.DagsterInstance.ephemeral() as instance:
        mp.setenv("SAE_LAKE_CONFIG", str(config))
        mp.delenv("SAE_LAKE_ROOT", raising=False)
        run_demo(instance=instance, print_fn=lambda _: None)
        yield config, instance


def _requested(instance, cursor) -> tuple[set[tuple[str, str]], object]:
    result = dg.evaluate_automation_conditions(defs, instance, cursor=cursor)
    keys = defs.get_repository_def().asset_graph.get_all_asset_keys()
    return {(k.to_user_string(), str(p)) for k in keys for p in result.get_requested_partitions(k)}, result.cursor


def _automate(instance, cursor, max_ticks: int = 5) -> tuple[set[tuple[str, str]], object]:
    """Evaluate every automation condition and run what it asks for, tick by tick, until it asks for nothing.
    Returns the (asset, partition) pairs materialized and the cursor; every run must succeed."""
    keys = defs.get_repository_def().asset_graph.get_all_asset_keys()
    done: set[tuple[str, str]] = set()
    for _ in range(max_ticks):
        result = dg.evaluate_automation_conditions(defs, instance, cursor=cursor)
        cursor = result.cursor
        by_partition: dict = {}
        for key in keys:
            for partition in result.get_requested_partitions(key):
                by_partition.setdefault(partition, []).append(key)
        if not by_partition:
            return done, cursor
        for partition, selection in by_partition.items():
            job = "sae_sweep" if partition else "catalog_refresh"
            run = defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition,
                                                               asset_selection=selection, raise_on_error=False)
            assert run.success, f"automation run {job}[{partition}] {selection} failed"
            done |= {(k.to_user_string(), str(partition)) for k in selection}
    raise AssertionError(f"automation still requesting after {max_ticks} ticks")


def _sensor_tick(instance, cursor):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lake": defs.resources["lake"]})
    result = model_registry_sensor(ctx)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    for run in result.run_requests:
        job = defs.resolve_job_def(run.job_name)
        assert job.execute_in_process(instance=instance, partition_key=run.partition_key).success
    return result


def test_a_settings_edit_reruns_exactly_the_partitions_it_shapes(swept):
    """Every partition records the fingerprint of the settings it was built from; editing a section makes the
    automation request the partitions whose fingerprint changed, and no others (a differently partitioned
    consumer, e.g. the sweep of new activations, follows once they land)."""
    config, instance = swept
    requested, cursor = _requested(instance, None)
    assert not {r for r in requested if r[0] not in NOT_SWEEP}

    def after_edit(changes: dict) -> set[tuple[str, str]]:  # each edit against the same, unedited state
        config.write_text(_sweep([4, 6], changes))
        load_settings(str(config))  # a broken edit would request nothing and pass for "nothing changed"
        return {r for r in _requested(instance, cursor)[0] if r[0] not in NOT_SWEEP}

    def each(assets, variants) -> set[tuple[str, str]]:
        return {(a, f"toy-gemma2|{v}") for a in assets for v in variants}

    everything = ("sae", "sae_training", "sae_metrics", "latent_stats", "concept_recovery", "latent_purity",
                  "latent_examples", "autointerp", "interpretability", "steering_generations", *RATINGS,
                  "true_steerability", "true_interpretability", "feature_scores", "selection", "patching",
                  "latent_profiles", "feature_dashboards")
    all_variants = ("topk-k4", "topk-k6", "pca")
    dashboards = each(("feature_dashboards",), all_variants)  # a dashboard shows every evaluation but patching
    scores = each(("autointerp", "interpretability", *RATINGS, "selection"), all_variants) | dashboards
    window_truth = each(("true_interpretability",), all_variants)  # reads the detection windows, not the judge
    try:
        # [sweep.train]: the trained SAEs and, in the same runs, all they feed; not the PCA baseline
        assert after_edit({"sweep": {"train": {"steps": 90}}}) == each(everything, ("topk-k4", "topk-k6"))
        # the judge, or how windows are scored: the scores and steering ratings of every SAE, never the
        # steering generations
        assert after_edit({"judge": {"model": "reader-v2"}}) == scores
        assert after_edit({"autointerp": {"threshold": 0.02}}) == scores | window_truth
        # which windows are gathered: the examples too
        examples = each(("latent_examples",), ("topk-k4", "topk-k6", "pca"))
        # (the generations and the true steerability read the rewritten examples, so they follow in the same run,
        # as eager does)
        generations = each(("steering_generations", "true_steerability"), all_variants)
        rerun = scores | examples | generations | window_truth
        assert after_edit({"autointerp": {"n_random": 5}}) == rerun
        # how steering generates: the generations and their ratings; how many rows a batch holds: nothing
        steering = each(("steering_generations", *RATINGS, "selection"), all_variants) | dashboards
        assert after_edit({"steering": {"max_new_tokens": 9}}) == steering
        assert not after_edit({"steering": {"batch_size": 3}})
        # the neutral prompt: every latent's scores and the selection; the candidate sets: the selection only;
        # how many latents a forward takes: nothing
        selected = each(("feature_scores", "selection"), all_variants) | dashboards
        assert after_edit({"selection": {"prompt": "In my view,"}}) == selected
        assert after_edit({"selection": {"max_k": 3}}) == each(("selection",), all_variants) | dashboards
        # the histograms: the profiles and the dashboards; how the pages are split: the dashboards only
        assert after_edit({"dashboards": {"histogram_bins": 20}}) == each(("latent_profiles",), all_variants) | \
            dashboards
        assert after_edit({"dashboards": {"latents_per_page": 64}}) == dashboards
        assert not after_edit({"selection": {"batch_size": 7}})
        # the patching pairs: the patched dictionaries' frontiers only; speed, the check's bar: nothing
        assert after_edit({"patching": {"n_pairs": 3}}) == each(("patching",), all_variants)
        assert not after_edit({"patching": {"min_ioi_accuracy": 0.1}})
        # a model's token budget: its activations (the sweep follows once they land), not the LM
        assert after_edit({"models": {"toy-gemma2": {"tokens": 1400}}}) == {("activations", "toy-gemma2")}
        # how fast activations are extracted, or nothing at all: nothing
        assert not after_edit({"extraction": {"batch_size": 8}})
        assert not after_edit({})
    finally:
        config.write_text(BASE)


def test_retired_variant_is_never_requested_for_a_new_model_and_stays_queryable(swept, capsys):
    config, instance = swept
    first = _sensor_tick(instance, None)
    _, cursor = _automate(instance, None)

    # retire topk-k6, add a model: the sensor adds the model and runs its chain, automation does the rest
    config.write_text(_sweep([4], models=BOTH_MODELS))
    second = _sensor_tick(instance, first.cursor)
    assert [r.partition_key for r in second.run_requests if r.job_name == "model_chain"] == ["toy-qwen2"]
    done, cursor = _automate(instance, cursor)
    sweep = {(a, p) for a, p in done if "|" in p}
    assert {p for _, p in sweep} == {"toy-qwen2|topk-k4", "toy-qwen2|pca"}  # the new model's current variants
    assert {"sae", "sae_metrics", "autointerp", "interpretability"} <= {a for a, _ in sweep}
    # once the new model's partitions land, the analysis follows by itself and the report counts its SAEs
    assert {(a, "None") for a in ANALYSIS} <= done
    assert "over 2 models (toy-gemma2, toy-qwen2)" in (config.parent / "lake" / "reports" / "report.md").read_text()

    # retired results stay in the lake and in SQL, marked as such
    assert cli(["sql", "select model, sae, status from sae_variants order by all", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "model,sae,status", "toy-gemma2,pca,current", "toy-gemma2,topk-k4,current", "toy-gemma2,topk-k6,retired",
        "toy-qwen2,pca,current", "toy-qwen2,topk-k4,current"]
    assert cli(["sql", "select count(*) as n from sae_metrics where sae = 'topk-k6'", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "1"]
    # the report pools only current variants: toy-gemma2's topk row counts topk-k4's CONCEPT100, not topk-k6's
    assert cli(["sql", "select (select n from interpretability_by_kind where model = 'toy-gemma2' and kind = 'topk')"
                " = (select count(*) from autointerp where model = 'toy-gemma2' and sae = 'topk-k4' and concept100)"
                " as only_current", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["only_current", "true"]

    # putting it back brings the old results back without recomputation (the new model gets it, once)
    config.write_text(_sweep([4, 6], models=BOTH_MODELS))
    _sensor_tick(instance, second.cursor)
    done, _ = _automate(instance, cursor)
    assert {p for _, p in done if "|" in p} == {"toy-qwen2|topk-k6"}
