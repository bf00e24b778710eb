"""Security: no pickle anywhere, remote code only when the registry says so, the judge's API key never written."""

import ast
import contextlib
import json
import logging
from pathlib import Path

import pytest

from sae_models.judges import build_judge
from sae_models.judges.config import JudgeConfig
from sae_models.judges.protocol import JudgeError, Window
from sae_models.lm.loading import ModelLoadError, load_config
from tests.judge_endpoint import QuietHandler, reply, serving

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("sae_models", "assets", "bench", "tests")
PICKLING_MODULES = {"pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}


def unsafe_calls(source: str) -> list[str]:
    """What in ``source`` can run a pickle or remote code: an import of a pickling module, ``torch.load``
    without ``weights_only=True``, ``np.load(..., allow_pickle=True)``, ``read_pickle``, and
    ``trust_remote_code=True`` written as a literal (it must come from the registry)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            found += [f"line {node.lineno}: imports {n}" for n in names if n and n.split(".")[0] in PICKLING_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        kwargs = {k.arg: k.value for k in node.keywords}
        literal_true = {k for k, v in kwargs.items() if isinstance(v, ast.Constant) and v.value is True}
        if name.endswith("torch.load") and "weights_only" not in literal_true:
            found.append(f"line {node.lineno}: {name} without weights_only=True")
        if name.endswith(("np.load", "numpy.load")) and "allow_pickle" in literal_true:
            found.append(f"line {node.lineno}: {name} with allow_pickle=True")
        if name.endswith("read_pickle"):
            found.append(f"line {node.lineno}: {name}")
        if "trust_remote_code" in literal_true:
            found.append(f"line {node.lineno}: trust_remote_code=True as a literal")
    return found


def test_the_scanner_sees_each_kind_of_unsafe_load():
    bad = ("import pickle\nfrom joblib import load\nimport torch, numpy as np\ntorch.load('x')\n"
           "np.load('x', allow_pickle=True)\nAutoModel.from_pretrained('x', trust_remote_code=True)\n")
    assert len(unsafe_calls(bad)) == 5
    assert unsafe_calls("torch.load('x', weights_only=True)\nnp.load('x')\nf(trust_remote_code=entry.flag)\n") == []


def test_no_pickle_or_unsafe_load_anywhere_in_the_code():
    files = [p for d in SCANNED for p in (REPO / d).rglob("*.py")]
    assert len(files) > 50
    found = {str(p.relative_to(REPO)): hits for p in files if (hits := unsafe_calls(p.read_text()))
             and p.name != Path(__file__).name}
    assert found == {}


@pytest.fixture
def model_with_custom_code(random_models, tmp_path) -> tuple[Path, Path]:
    """A model directory whose config names custom code (``auto_map``); the code leaves a marker when it runs."""
    import shutil

    out = tmp_path / "custom"
    shutil.copytree(random_models["qwen2"], out)
    marker = tmp_path / "remote-code-ran"
    (out / "custom_config.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "from transformers import Qwen2Config\n\n\nclass CustomConfig(Qwen2Config):\n    model_type = 'custom-qwen'\n")
    config = json.loads((out / "config.json").read_text())
    config.update(model_type="custom-qwen", auto_map={"AutoConfig": "custom_config.CustomConfig"})
    (out / "config.json").write_text(json.dumps(config))
    return out, marker


def test_custom_model_code_runs_only_when_trusted(model_with_custom_code):
    path, marker = model_with_custom_code
    with pytest.raises(ModelLoadError, match="custom") as err:
        load_config(str(path))  # the registry's default: trust_remote_code = false
    assert str(path) in str(err.value) and "trust_remote_code" in str(err.value) and not marker.exists()
    with contextlib.suppress(ModelLoadError):  # whether the custom class then loads is beside the point
        load_config(str(path), trust_remote_code=True)
    assert marker.exists()


def test_the_registry_trusts_no_remote_code_by_default(tiny_config):
    from assets.lakehouse.config import load_settings

    assert not any(m.trust_remote_code for m in load_settings().models)


SENTINEL = "sk-sentinel-7f3a9c1e-never-written"


class _Judge(QuietHandler):
    """Records the Authorization header and answers every call alike; 401 when ``refuse`` is set."""

    keys: list[str] = []
    refuse = False

    def do_POST(self):
        type(self).keys.append(self.headers.get("Authorization", ""))
        reply(self, 401 if type(self).refuse else 200, "Explanation: farming. 1, 2\nRating: [[1]]")


@pytest.fixture
def judge_endpoint():
    _Judge.keys, _Judge.refuse = [], False
    with serving(_Judge) as url:
        yield url


def test_the_judge_key_is_sent_but_never_logged_cached_or_reported(judge_endpoint, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SAE_LAKE_TEST_JUDGE_KEY", SENTINEL)
    caplog.set_level(logging.DEBUG)  # every library's debug logging too (openai, httpx)
    cfg = JudgeConfig(backend="openai", model="m", base_url=judge_endpoint, api_key_env="SAE_LAKE_TEST_JUDGE_KEY",
                      max_retries=0)
    lines: list[str] = []
    judge = build_judge(cfg, tmp_path / "judge_cache", progress=lines.append)
    windows = [[Window(("the", "cow", "ate"), (0.0, 1.0, 0.0))] * 3] * 4
    judge.explain(windows, [0.5] * 4)
    judge.detect(["farming"] * 4, windows)
    judge.rate("concept", ["farming"] * 4, ["tell me"] * 4, ["the cow ate"] * 4)
    _Judge.refuse = True
    with pytest.raises(JudgeError) as refused:
        judge.rate("fluency", ["x"], ["y"], ["a new text"])
    assert _Judge.keys and all(k == f"Bearer {SENTINEL}" for k in _Judge.keys)  # the key was used
    written = b"".join(p.read_bytes() for p in (tmp_path / "judge_cache").rglob("*") if p.is_file())
    assert written and judge.stats.calls == 3  # each batch's four identical requests are asked once
    reported = [caplog.text, *lines, str(judge.stats), str(refused.value), json.dumps(cfg.model_dump()),
                json.dumps(cfg.identity())]
    assert SENTINEL.encode() not in written and not [r for r in reported if SENTINEL in r]
