"""The whole graph under the CPU pin: the demo on two machines (as the environment makes them) gives the same
tables, bit for bit."""

from assets.lakehouse.digest import lake_digests
from tests.machines import MACHINES, run_on
from tests.tiny_world import DROP, tiny_toml

# The first machine runs the demo on an instance that keeps its history in memory; the second runs `sae-lake demo`
# itself, history on disk (DAGSTER_HOME), two runs at a time: the tables depend neither on where Dagster records its
# runs nor on what runs beside a run.
IN_MEMORY = """
import assets.definitions
from dagster import DagsterInstance
from assets.demo import run_demo
with DagsterInstance.ephemeral() as instance:
    run_demo(instance=instance)
"""
CLI = "import sys; from assets.cli import main; sys.exit(main(['demo', '--workers', '2']))"


def test_the_whole_graph_gives_identical_tables_under_other_kernels_and_threads(tmp_path):
    """The demo on a tiny world (every asset, a TopK SAE, PCA and ICA per model) in two environments (ATen's SSE
    kernels and OpenBLAS's oldest on one thread; ATen's AVX2 kernels and OpenBLAS's choice on two), each in its own
    process, the second through the `sae-lake demo` command: every table, every model and every SAE the same, bit
    for bit, but the measured wall times."""
    lakes = []
    for i, machine in enumerate(MACHINES):
        root = tmp_path / f"machine{i}"
        root.mkdir()
        # lake.toml's default pin, as a user's demo has it (not the test processes' one thread)
        sweep = {"sweep": {"architectures": ["topk"], "baselines": ["pca", "ica"]}, "reproducibility": DROP}
        (root / "lake.toml").write_text(tiny_toml(sweep, twins=False))
        script, home = (IN_MEMORY, {}) if i == 0 else (CLI, {"DAGSTER_HOME": str(root / "dagster_home")})
        out = run_on({**machine, **home}, script, root / "lake.toml", timeout=900)
        assert i == 0 or "demo: 10 runs in" in out  # the command's own summary
        lakes.append(lake_digests(root / "lake"))
    assert {"activations", "models", "saes", "steering_generations", "sae_summary", "rank_agreement"} <= set(lakes[0])
    first, second = lakes
    assert {name: (d, second.get(name)) for name, d in first.items() if d != second.get(name)} == {}
    assert set(first) == set(second)
