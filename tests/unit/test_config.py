import pytest

from assets.lakehouse.config import ConfigError, lake_root, load_settings
from tests.conftest import TINY_TOML


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


@pytest.mark.parametrize(("edit", "message"), [
    (("tokens = 1500", "tokens = 1500\ncolour = 'red'"), r"models\[0\]\.colour: unknown key"),
    (('slug = "toy-gemma2"', 'slug = "Toy Gemma"'), r"models\[0\]\.slug: .*must match"),
    (("layer = 1\nhook", "layer = 7\nhook"), r"models\[1\]: .*layer 7 is out of range for toy-qwen2 \(2 layers"),
    (('slug = "toy-qwen2"', 'slug = "toy-gemma2"'), r"duplicate model slugs \['toy-gemma2'\]"),
    (('hook = "mlp_out"', 'hook = "resid_mid"'), r"models\[1\]\.hook: "),
    (("[extraction]", "[extraction]\nbatch = 3"), r"extraction\.batch: unknown key"),
    (("[[models]]", '[[external_saes]]\nname = "pca"\nmodel = "toy-gemma2"\npath = "x"\n\n[[models]]'),
     r"external SAE name 'pca' is already a \[sweep\] variant"),
])
def test_bad_config_is_one_line_naming_the_field(tmp_path, edit, message):
    old, new = edit
    assert old in TINY_TOML
    with pytest.raises(ConfigError, match=message) as err:
        load_settings(_write(tmp_path, TINY_TOML.replace(old, new, 1)))
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
