"""The documentation holds together: a short README, every lake.toml setting documented where it is declared
(the settings reference is generated from it), and every citation key defined on the references page."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _hooks():
    spec = importlib.util.spec_from_file_location("settings_reference", ROOT / "docs/_hooks/settings_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).exists(), target


def test_every_setting_says_what_it_does():
    rows = [line for line in _hooks().settings_reference().splitlines() if line.startswith("| `")]
    assert len(rows) > 100
    undocumented = [row.split("|")[1].strip() for row in rows if row.rstrip().endswith("|  |")]
    assert not undocumented, f"settings without a description or comment: {undocumented}"


def test_every_citation_key_is_on_the_references_page():
    defined = set(re.findall(r"\*\*(\[[A-Z]\d\d\])\*\*", (ROOT / "docs/references.md").read_text()))
    sources = [*ROOT.glob("docs/**/*.md"), ROOT / "README.md", *ROOT.glob("sae_models/**/*.py"),
               *ROOT.glob("assets/**/*.py")]
    used = {key for path in sources for key in re.findall(r"\[[A-Z]\d\d\]", path.read_text())}
    assert used and used <= defined, f"undefined citation keys: {sorted(used - defined)}"


def test_every_asset_names_a_docs_page_that_exists():
    import dagster as dg

    from assets.definitions import ASSET_DOCS_PAGES, DOCS_PAGES, defs

    assert all((ROOT / "docs" / page).exists() for page in {*DOCS_PAGES.values(), *ASSET_DOCS_PAGES.values()})
    graph = defs.resolve_asset_graph()
    pages = {key.to_user_string(): graph.get(key).metadata.get("docs") for key in graph.get_all_asset_keys()}
    assert pages["control_contrast"] == dg.MetadataValue.path("docs/control.md")
    missing = [key for key, page in pages.items() if page is None and key != "judge_cache"]
    assert not missing, f"assets without a docs page: {missing}"
