"""The layers hold: sae_models never imports Dagster, DuckDB or the Dagster layer; assets/shared and
assets/lakehouse never import a domain (assets/defs) or what loads the domains (the code location, the demo,
the CLI); and no module imports itself through others, counting the
imports inside functions, which hide a cycle from Python but not from a reader."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports, anywhere in its body (a package's ``__init__`` is named
    after the package)."""
    modules = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (scipy's)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    names = sorted(graph)
    index = {name: i for i, name in enumerate(names)}
    edges = [(index[a], index[b]) for a in names for b in graph[a]]
    rows, cols = zip(*edges, strict=True) if edges else ((), ())
    _, labels = connected_components(csr_matrix(([1] * len(edges), (rows, cols)), shape=(len(names),) * 2),
                                     directed=True, connection="strong")
    members: dict[int, list[str]] = {}
    for name, label in zip(names, labels, strict=True):
        members.setdefault(int(label), []).append(name)
    return sorted(group for group in members.values() if len(group) > 1)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT, ("assets", "sae_models"))


def test_no_module_imports_itself_through_others(graph):
    assert cycles(graph) == []


# The domains (assets/defs) and what loads them: the code location, the demo that runs its jobs, the CLI.
DOMAIN = ("assets.defs", "assets.definitions", "assets.demo", "assets.cli")


def test_shared_code_knows_no_domain(graph):
    shared = {m: t for m, t in graph.items() if m.startswith(("assets.shared", "assets.lakehouse"))}
    assert shared and not {m: sorted(t) for m, t in shared.items() if any(x.startswith(DOMAIN) for x in t)}


def test_the_science_imports_no_pipeline():
    for path in (ROOT / "sae_models").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            assert not [n for n in names if n.split(".")[0] in ("dagster", "duckdb", "assets")], path


def test_a_cycle_hidden_in_a_function_is_found(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/__init__.py").write_text("")
    (tmp_path / "pkg/a.py").write_text("from pkg.b import g\n\ndef f():\n    return g()\n")
    (tmp_path / "pkg/b.py").write_text("def g():\n    from pkg.a import f\n    return f\n")
    (tmp_path / "pkg/c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(tmp_path, ("pkg",))) == [["pkg.a", "pkg.b"]]
