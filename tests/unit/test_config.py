import pytest

from assets.lakehouse.config import ConfigError, lake_root, load_settings
from tests.tiny_world import tiny_toml


def _write(tmp_path, text):
    path = tmp_path / "lake.toml"
    path.write_text(text)
    return path


def test_repo_lake_toml_is_valid():
    settings = load_settings("lake.toml")
    assert {m.slug for m in settings.models} == {"toy-gemma2", "toy-qwen2"}
    assert all(m.toy is not None for m in settings.models)


def test_tiny_config_and_root_override(tiny_config, monkeypatch, tmp_path):
    settings = load_settings()
    assert lake_root(settings) == tiny_config.parent / "lake"
    monkeypatch.setenv("SAE_LAKE_ROOT", str(tmp_path / "elsewhere"))
    assert lake_root(settings) == tmp_path / "elsewhere"


GEMMA, QWEN = "toy-gemma2", "toy-qwen2"


@pytest.mark.parametrize(("change", "message"), [
    ({"models": {GEMMA: {"colour": "red"}}}, r"models\[0\]\.colour: unknown key"),
    ({"models": {GEMMA: {"slug": "Toy Gemma"}}}, r"models\[0\]\.slug: .*must match"),
    ({"models": {QWEN: {"layer": 7}}}, r"models\[1\]: .*layer 7 is out of range for toy-qwen2 \(2 layers"),
    ({"models": {QWEN: {"slug": GEMMA}}}, r"duplicate model slugs \['toy-gemma2'\]"),
    ({"models": {QWEN: {"hook": "resid_mid"}}}, r"models\[1\]\.hook: "),
    ({"extraction": {"batch": 3}}, r"extraction\.batch: unknown key"),
    ({"selection": {"resamples": 999}}, r"selection: resamples: .*write it as \[analysis\] resamples"),
    ({"external_saes": [{"name": "pca", "model": GEMMA, "path": "x"}]},
     r"external SAE name 'pca' is already a \[sweep\] variant"),
    ({"external_saes": [{"name": "ext", "model": GEMMA, "path": "x", "norm_scaling_factor": 0}]},
     r"external_saes\[0\]\.norm_scaling_factor: "),
])
def test_bad_config_is_one_line_naming_the_field(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_settings(_write(tmp_path, tiny_toml(change)))
    assert "\n" not in str(err.value)


def test_local_model_layer_is_checked_against_its_config(tmp_path, random_models):
    text = f'[[models]]\nslug = "llama-tiny"\nsource = "{random_models["llama"]}"\nlayer = 3\ntokens = 10\n'
    with pytest.raises(ConfigError, match=r"layer 3 is out of range for llama-tiny \(3 layers"):
        load_settings(_write(tmp_path, text))


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_write(tmp_path, "[lake\nroot="))
