"""Feature dashboards: the latent profiles (activation histograms, logit-lens extremes) against direct
computation, and the site's files from hand-made rows: every latent, escaped text, missing tables."""

import json
import re

import pytest
import torch

from assets.dashboards.neuronpedia import neuronpedia_files
from assets.dashboards.pages import lake_index_page, markdown_page
from assets.dashboards.site import SAETables, dashboard_files
from sae_models.evals.autointerp import TokenText
from sae_models.evals.config import DashboardConfig
from sae_models.evals.profiles import ProfileError, run_latent_profiles
from sae_models.lm import load_lm
from sae_models.lm.intervene import logit_lens
from sae_models.sae import SAEConfig, build_sae


@pytest.fixture(scope="module")
def lm_and_sae(random_models):
    lm = load_lm(str(random_models["gemma2"]))
    torch.manual_seed(0)
    sae = build_sae(SAEConfig("relu", lm.d_model, 48, sparsity_coefficient=0.1))
    return lm, sae


def _batches(d: int, n: int = 600, size: int = 128) -> list[torch.Tensor]:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(1)) * 3
    return list(x.split(size))


def test_histograms_count_every_firing_token_in_its_bin_and_the_lens_is_the_decoders(lm_and_sae):
    lm, sae = lm_and_sae
    batches = _batches(lm.d_model)
    with torch.no_grad():
        codes = torch.cat([sae.encode(b) for b in batches])
    top = codes.max(0).values
    cfg = DashboardConfig(histogram_bins=8, lens_tokens=5, histogram_tokens=500)
    rows = run_latent_profiles(lm, sae, batches, dict(enumerate(top.tolist())), cfg).rows
    assert [r.latent for r in rows] == list(range(48))
    read = codes[:500]  # histogram_tokens caps the tokens counted
    for r in rows:
        fired = read[:, r.latent][read[:, r.latent] > 0]
        assert sum(r.histogram) == len(fired) and r.histogram_tokens == 500
        expected = torch.bincount((fired.double() / float(top[r.latent]) * 8).long().clamp(max=7), minlength=8)
        assert r.histogram == expected.tolist()
    fires = next(r for r in rows if sum(r.histogram))
    assert fires.histogram_max == pytest.approx(float(top[fires.latent]))
    with torch.no_grad():
        logits = logit_lens(lm, sae.decoder_directions())
    f = 7
    assert rows[f].lens_top_logits == sorted(rows[f].lens_top_logits, reverse=True)
    assert rows[f].lens_top_logits == pytest.approx(logits[f].topk(5).values.tolist(), abs=1e-3)
    assert rows[f].lens_bottom_logits == pytest.approx(logits[f].topk(5, largest=False).values.tolist(), abs=1e-3)
    assert rows[f].lens_bottom_tokens == TokenText(lm.tokenizer)(logits[f].topk(5, largest=False).indices.tolist())


def test_profiles_refuse_latent_stats_of_another_width(lm_and_sae):
    lm, sae = lm_and_sae
    with pytest.raises(ProfileError, match=r"latent_stats has 47 latents, the SAE 48 \(missing e.g. \[3\]\)"):
        run_latent_profiles(lm, sae, _batches(lm.d_model), {f: 1.0 for f in range(48) if f != 3}, DashboardConfig())


HOSTILE = "<script>alert(1)</script>"


def _tables(d_sae: int = 5) -> SAETables:
    stats = [{"latent": f, "firing_frequency": 0.1 * f, "max_activation": 1.0 + f, "mean_activation": 0.5,
              "token_eta2": 0.3, "contextual": True} for f in range(d_sae)]
    profiles = [{"latent": f, "histogram_max": 1.0 + f, "histogram": [f, f, 0], "histogram_tokens": 9,
                 "lens_top_tokens": ["a", HOSTILE],
                 "lens_top_logits": [2.0, 1.0], "lens_bottom_tokens": ["c", "d"], "lens_bottom_logits": [-1.0, -2.0]}
                for f in range(d_sae)]
    autointerp = [{"latent": 1, "explanation": f"tokens {HOSTILE}", "detection_score": 0.75,
                   "detection_balanced": 0.8, "detect_windows": 8, "detect_positive": 2,
                   "simulation_score": float("nan"), "concept_purity": 0.9, "purity_feature": "word:a"}]
    examples = [{"latent": 1, "kind": kind, "rank": rank, "doc_id": 0, "pos": 1, "score": 2.0, "tokens": [3, 4, -1],
                 "acts": [0.0, 2.0, 0.0]} for kind in ("top", "random") for rank in (1, 0)]
    return SAETables(stats, profiles, autointerp, examples)


def _text(token: int) -> str:
    return {3: " the", 4: HOSTILE}.get(token, "")


def _script_value(text: str) -> dict:
    return json.loads(re.fullmatch(r"window\.\w+ = Object\.assign\(window\.\w+ \|\| \{\}, (.*)\);\n", text,
                                   re.S).group(1))


def test_the_site_shows_every_latent_and_escapes_what_the_lake_holds():
    files = dashboard_files("toy", "topk-k8", _tables(), _text, per_page=2, d_sae=5, cards=[("L0", "8.000")])
    assert set(files) == {"index.html", "latent.html", "data/meta.js", "data/index.js", "data/latents-0.js",
                          "data/latents-1.js", "data/latents-2.js"}
    index = _script_value(files["data/index.js"])
    assert [r[0] for r in index["rows"]] == [0, 1, 2, 3, 4]
    meta = _script_value(files["data/meta.js"])["meta"]
    assert meta["d_sae"] == 5 and meta["sort"] == "detection"
    assert "<" not in "".join(text for name, text in files.items() if name.startswith("data/"))  # all escaped
    one = _script_value(files["data/latents-0.js"])["1"]
    assert one["explanation"] == f"tokens {HOSTILE}"  # the text itself survives, as data
    assert one["cards"]["simulation"] is None  # NaN is no number a page can show
    assert one["cards"]["detection_always_no"] == 0.75
    assert [w["t"] for w in one["examples"]["top"]] == [[" the", HOSTILE, ""]] * 2  # the padding as no text
    assert one["steering"] is None and one["scores"] is None  # tables not materialized: shown as such
    assert _script_value(files["data/latents-0.js"])["0"]["examples"] is None  # a latent with no examples


def test_an_sae_before_its_evaluations_still_gets_a_dashboard():
    tables = SAETables(_tables().latent_stats)
    files = dashboard_files("m", "external", tables, _text, per_page=256, d_sae=5, cards=[])
    assert len(_script_value(files["data/index.js"])["rows"]) == 5
    assert _script_value(files["data/meta.js"])["meta"]["sort"] == "firing_frequency"
    assert _script_value(files["data/latents-0.js"])["4"]["histogram"] is None


def test_latents_are_placed_by_their_number_not_their_row():
    t = _tables(6)
    t.latent_stats = [r for r in t.latent_stats if r["latent"] != 2]
    files = dashboard_files("m", "s", t, _text, per_page=3, d_sae=6, cards=[])
    second = _script_value(files["data/latents-1.js"])
    assert set(second) == {"3", "4", "5"} and second["5"]["cards"]["max_activation"] == 6.0
    assert _script_value(files["data/latents-0.js"])["2"] is None


def test_the_report_page_links_its_siblings_and_the_index_escapes_names():
    page = markdown_page(f"# r\n\n| a | b |\n|---|---|\n| 1 | {HOSTILE} |\n\nsee [patching.md](patching.md) and "
                         f"({HOSTILE}), `a ` b {HOSTILE}`\n\n{HOSTILE} [x](javascript:alert(1))\n", "r", [])
    assert "<table>" in page and 'href="patching.html"' in page and 'id="toc"' in page
    assert HOSTILE not in page and "javascript:" not in page  # text from the lake in the report is never HTML
    index = lake_index_page([{"model": "m", "sae": HOSTILE, "href": "x", "kind": "SAE", "latents": 4,
                              "l0": float("nan"), "explained_variance": 0.5, "mu": None, "g": None, "g_dtc": None}],
                            None)
    assert HOSTILE not in index and "no report yet" in index


def test_the_neuronpedia_export_is_the_layout_saedashboards_reader_takes():
    from sae_dashboard.neuronpedia.neuronpedia_dashboard import NeuronpediaDashboardBatch

    t = _tables()
    files = neuronpedia_files("toy", 1, "topk-k8", t.latent_profiles, t.latent_stats, t.latent_examples, t.autointerp,
                              _text, per_batch=2, prompts=10, tokens_per_prompt=32, dataset="d")
    assert set(files) == {"batch-0.json", "batch-1.json", "batch-2.json", "explanations.jsonl"}
    features = []
    for name in ("batch-0.json", "batch-1.json", "batch-2.json"):
        raw = json.loads(files[name])
        batch = NeuronpediaDashboardBatch(**raw)  # its reader refuses a field it does not know
        assert batch.to_dict() == raw  # and writes back every field it has: none missing, none renamed
        assert (raw["model_id"], raw["layer"], raw["sae_set"]) == ("toy", 1, "topk-k8")
        features += raw["features"]
    assert [f["feature_index"] for f in features] == [0, 1, 2, 3, 4]
    one = features[1]
    assert (one["pos_str"], one["neg_values"], one["frac_nonzero"]) == (["a", HOSTILE], [-1.0, -2.0], 0.1)
    assert one["freq_hist_data_bar_heights"] == [1.0, 1.0, 0.0]
    assert one["freq_hist_data_bar_values"] == [round(2 / 6, 3), 1.0, round(10 / 6, 3)]  # bin centres of (0, 2]
    assert [a["bin_min"] for a in one["activations"]] == [-1, -1, 0, 0]  # the top windows first
    assert one["activations"][0] == {"bin_min": -1, "bin_max": 2.0, "bin_contains": -1, "tokens": [" the", HOSTILE],
                                     "values": [0.0, 2.0], "qualifying_token_index": 1}  # the padding left out
    assert {(a["bin_min"], a["bin_max"], a["bin_contains"]) for a in one["activations"][2:]} == {(0, 2.0, 1.0)}
    assert (features[0]["freq_hist_data_bar_values"], features[0]["freq_hist_data_bar_heights"]) == ([], [])
    (line,) = files["explanations.jsonl"].splitlines()
    assert json.loads(line) == {"modelId": "toy", "layer": "1-topk-k8", "index": "1",
                                "description": f"tokens {HOSTILE}", "scores": {"detection": 0.75, "simulation": None}}
