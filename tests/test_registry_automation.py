"""The partition set is exactly the valid (model, variant) pairs: automation evaluated for real (Dagster's
``evaluate_automation_conditions``), a variant retired from the sweep, a model added afterwards."""

import dagster as dg

from assets.definitions import defs
from assets.defs.models.registry_sensor import model_registry_sensor
from assets.lakehouse.cli import main as cli
from assets.lakehouse.demo import run_demo
from tests.conftest import TINY_TOML

ONE_MODEL = TINY_TOML[:TINY_TOML.index("[[models]]\nslug = \"toy-qwen2\"")]
SWEEP = ('architectures = ["relu", "topk", "gated"]', 'architectures = ["topk"]')
BASELINES = ('baselines = ["pca", "neuron"]', "baselines = []")


def _config(text: str, target_l0: str) -> str:
    return text.replace(*SWEEP).replace(*BASELINES).replace("target_l0 = [4]", f"target_l0 = {target_l0}")


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


def test_retired_variant_is_never_requested_for_a_new_model_and_stays_queryable(tiny_config, capsys):
    tiny_config.write_text(_config(ONE_MODEL, "[4, 6]"))
    with dg.instance_for_test() as instance:
        run_demo(instance=instance, print_fn=lambda _: None)
        first = _sensor_tick(instance, None)
        _, cursor = _automate(instance, None)

        # retire topk-k6, add a model: the sensor adds the model and runs its chain, automation does the rest
        tiny_config.write_text(_config(TINY_TOML, "[4]"))
        second = _sensor_tick(instance, first.cursor)
        assert [r.partition_key for r in second.run_requests if r.job_name == "model_chain"] == ["toy-qwen2"]
        done, cursor = _automate(instance, cursor)
        sweep = {(a, p) for a, p in done if "|" in p}
        assert {p for _, p in sweep} == {"toy-qwen2|topk-k4"}  # the current variants of the new model only
        assert {"sae", "sae_metrics", "autointerp", "interpretability"} <= {a for a, _ in sweep}
        assert ("catalog", "None") in done

        # retired results stay in the lake and in SQL, marked as such
        assert cli(["sql", "select model, sae, status from sae_variants order by all", "--format", "csv"]) == 0
        assert capsys.readouterr().out.splitlines() == [
            "model,sae,status", "toy-gemma2,topk-k4,current", "toy-gemma2,topk-k6,retired",
            "toy-qwen2,topk-k4,current"]
        assert cli(["sql", "select count(*) as n from sae_metrics where sae = 'topk-k6'", "--format", "csv"]) == 0
        assert capsys.readouterr().out.splitlines() == ["n", "1"]

        # putting it back brings the old results back without recomputation (the new model gets it, once)
        tiny_config.write_text(_config(TINY_TOML, "[4, 6]"))
        _sensor_tick(instance, second.cursor)
        done, _ = _automate(instance, cursor)
        assert {p for _, p in done if "|" in p} == {"toy-qwen2|topk-k6"}


def _requested(instance, cursor) -> tuple[set[tuple[str, str]], object]:
    result = dg.evaluate_automation_conditions(defs, instance, cursor=cursor)
    keys = defs.get_repository_def().asset_graph.get_all_asset_keys()
    return {(k.to_user_string(), str(p)) for k in keys for p in result.get_requested_partitions(k)}, result.cursor


def test_a_settings_edit_reruns_exactly_the_partitions_it_shapes(tiny_config):
    """Every partition records the fingerprint of the settings it was built from; editing a section makes the
    automation request the partitions whose fingerprint changed, and no others (a differently partitioned
    consumer, e.g. the sweep of new activations, follows once they land)."""
    base = ONE_MODEL.replace(*SWEEP).replace('baselines = ["pca", "neuron"]', 'baselines = ["pca"]')
    tiny_config.write_text(base)
    with dg.instance_for_test() as instance:
        run_demo(instance=instance, print_fn=lambda _: None)
        requested, cursor = _requested(instance, None)
        assert not {r for r in requested if r[0] not in ("catalog", "interpretability_by_kind")}

        def after_edit(text: str) -> set[tuple[str, str]]:  # each edit against the same, unedited state
            tiny_config.write_text(text)
            return _requested(instance, cursor)[0]

        # [sweep.train]: the trained SAE and, in the same run, all it feeds; not the PCA baseline
        per_sae = {"sae", "sae_training", "sae_metrics", "latent_stats", "concept_recovery", "latent_purity",
                   "latent_examples", "autointerp", "interpretability"}
        assert after_edit(base.replace("steps = 80", "steps = 90")) == {(a, "toy-gemma2|topk-k4") for a in per_sae}
        # the judge, or how windows are scored: the scores of every SAE, nothing else
        scores = {(a, f"toy-gemma2|{v}") for a in ("autointerp", "interpretability") for v in ("topk-k4", "pca")}
        assert after_edit(base + '\n[judge]\nmodel = "reader-v2"\n') == scores
        assert after_edit(base.replace("[autointerp]", "[autointerp]\nthreshold = 0.02")) == scores
        # which windows are gathered: the examples too
        examples = {("latent_examples", f"toy-gemma2|{v}") for v in ("topk-k4", "pca")}
        assert after_edit(base.replace("n_random = 4", "n_random = 5")) == scores | examples
        # how fast activations are extracted: nothing
        assert not {r for r in after_edit(base.replace("batch_size = 16", "batch_size = 8"))
                    if r[0] not in ("catalog", "interpretability_by_kind")}
        # a model's token budget: its activations (the sweep follows once they land), not the LM
        assert after_edit(base.replace("tokens = 1500", "tokens = 1400", 1)) == {("activations", "toy-gemma2")}
        # unchanged settings: nothing
        assert not {r for r in after_edit(base) if r[0] not in ("catalog", "interpretability_by_kind")}
