"""The dashboards in a real browser (headless Chromium, from file://): no console error, every latent listed,
sorting and filtering change what is shown, a latent's page renders the lake's text as text, and nothing is
blank."""

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from assets.dashboards.pages import lake_index_page, markdown_page
from assets.dashboards.site import SAETables, dashboard_files
from tests.browser import chromium, open_page, screenshot_spread

HOSTILE = "<img src=x onerror=alert(1)>"
D_SAE = 300


def _site(root: Path) -> Path:
    stats = [{"latent": f, "firing_frequency": (f * 37 % 101) / 1000, "max_activation": 1.0 + f % 7,
              "mean_activation": 0.5, "token_eta2": 0.3, "contextual": True} for f in range(D_SAE)]
    profiles = [{"latent": f, "histogram_max": 2.0, "histogram": [f % 5, 3, 1, 0, 2], "histogram_tokens": 99,
                 "lens_top_tokens": ["up", HOSTILE], "lens_top_logits": [2.0, 1.0],
                 "lens_bottom_tokens": ["down", "low"], "lens_bottom_logits": [-1.0, -2.0]} for f in range(D_SAE)]
    autointerp = [{"latent": f, "explanation": f"tokens '{f}' {HOSTILE}" if f == 3 else f"tokens '{f}'",
                   "detection_score": (f * 13 % 17) / 17, "detection_balanced": 0.6, "detect_windows": 10,
                   "detect_positive": 4, "simulation_score": 0.2} for f in range(0, D_SAE, 3)]
    examples = [{"latent": 3, "kind": "top", "rank": 0, "doc_id": 0, "pos": 1, "score": 2.0, "tokens": [1, 2, 3],
                 "acts": [0.0, 2.0, 0.5]}]
    concepts = [{"latent": 3, "concept": f"c {HOSTILE}", "best_factor": 2.0, "test_hm": 0.5, "unsteered_test_hm": 0.25}]
    generations = [{"latent": 3, "factor": f, "instruction_id": "i", "split": "test", "instruction": "tell me",
                    "generation": HOSTILE} for f in (0.0, 2.0)]
    ratings = [{"latent": 3, "factor": f, "instruction_id": "i", "concept_rating": 2, "instruct_rating": 1,
                "fluency_rating": 2, "hm": 1.2} for f in (0.0, 2.0)]
    scores = [{"latent": f, "output_score": f / 1000, "delta_c1": 0.5, "delta_c5": 0.25, "up_rank": 1, "down_rank": 2,
               "lens_rank": 0, "lens_prob": 0.3} for f in (3, 4)]
    purity = [{"latent": 3, "purity": 0.75, "purity_feature": f"topic:art {HOSTILE}"}]
    tables = SAETables(stats, profiles, autointerp, examples, scores, concepts, ratings, generations, purity)
    site = root / "feature_dashboards" / "model=toy" / "sae=topk-k8"
    for name, text in dashboard_files("toy", "topk-k8", tables, lambda t: f" w{t}" if t != 2 else HOSTILE,
                                      per_page=64, d_sae=D_SAE, cards=[("L0", "8.000")]).items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    (root / "reports").mkdir()
    (root / "reports" / "report.html").write_text(markdown_page("# report\n\n| a |\n|---|\n| 1 |\n", "report", []))
    (root / "feature_dashboards" / "index.html").write_text(lake_index_page(
        [{"model": "toy", "sae": "topk-k8", "href": "model=toy/sae=topk-k8/index.html", "kind": "SAE",
          "latents": D_SAE, "l0": 8.0, "explained_variance": 0.9, "mu": 0.7, "g": 0.4, "g_dtc": 0.5}],
        "../reports/report.html"))
    return site


def _first_column(session) -> list[str]:
    return [td.text for td in session.find_elements(By.CSS_SELECTOR, "#latent-table tbody td.col-latent")]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    return _site(tmp_path_factory.mktemp("lake"))


def _frequency(latent: int) -> float:
    return (latent * 37 % 101) / 1000


def test_the_index_lists_every_latent_and_sorts_filters_and_pages(site):
    with chromium() as session:
        assert open_page(session, site / "index.html") == []
        assert session.find_element(By.ID, "count").text == str(D_SAE)
        assert session.find_element(By.ID, "total").text == str(D_SAE)
        assert len(_first_column(session)) == 100  # the first page
        header = session.find_element(By.CSS_SELECTOR, "th[data-key=firing_frequency]")
        header.click()  # a number sorts high to low first
        by_frequency = sorted(range(D_SAE), key=lambda f: (-_frequency(f), f))
        assert [_frequency(int(f)) for f in _first_column(session)] == [_frequency(f) for f in by_frequency[:100]]
        header.click()
        assert [_frequency(int(f)) for f in _first_column(session)] == sorted(map(_frequency, range(D_SAE)))[:100]
        session.find_element(By.CSS_SELECTOR, "th[data-key=detection]").click()
        column = [td.text for td in session.find_elements(By.CSS_SELECTOR, "#latent-table td.col-detection")]
        assert column[:100] == [f"{v:.3f}" for v in sorted(((f * 13 % 17) / 17 for f in range(0, D_SAE, 3)),
                                                            reverse=True)]  # the 100 scored ones, none missing
        session.find_element(By.ID, "next").click()
        session.find_element(By.ID, "next").click()
        session.find_element(By.ID, "next").click()  # past the last page stays on it
        assert session.find_element(By.ID, "page").text == "3 / 3" and len(_first_column(session)) == 100
        assert set(td.text for td in session.find_elements(By.CSS_SELECTOR, "td.col-detection")) == {"–"}  # nulls last
        Select(session.find_element(By.ID, "size")).select_by_visible_text("all")
        assert len(_first_column(session)) == D_SAE and session.find_element(By.ID, "page").text == "1 / 1"
        session.find_element(By.ID, "search").send_keys("tokens '3")
        assert session.find_element(By.ID, "count").text == "5"  # the scored latents 3, 30, 33, 36, 39
        session.find_element(By.ID, "search").send_keys(Keys.CONTROL, "a", Keys.DELETE)
        assert session.find_element(By.ID, "count").text == str(D_SAE)
        session.find_element(By.ID, "minimum").send_keys("0.9")
        Select(session.find_element(By.ID, "column")).select_by_value("detection")
        assert session.find_element(By.ID, "count").text == str(sum((f * 13 % 17) / 17 >= 0.9
                                                                     for f in range(0, D_SAE, 3)))
        assert screenshot_spread(session) > 20
        assert [m for m in session.get_log("browser") if m["level"] == "SEVERE"] == []


def test_a_latent_page_renders_the_lakes_text_as_text(site):
    with chromium(height=2000) as session:
        assert open_page(session, site / "latent.html", "#3") == []
        WebDriverWait(session, 10).until(lambda s: "latent 3" in s.find_element(By.ID, "title").text)
        assert HOSTILE in session.find_element(By.ID, "explanation").text
        assert session.find_elements(By.CSS_SELECTOR, "img") == []  # the hostile tag stayed text everywhere
        assert len(session.find_elements(By.CSS_SELECTOR, "#histogram rect")) == 5
        assert [td.text for td in session.find_elements(By.CSS_SELECTOR, "#lens td.col-promoted")] == ["up", HOSTILE]
        shaded = session.find_elements(By.CSS_SELECTOR, "#examples span.tok")
        assert [s.get_attribute("title") for s in shaded] == ["activation 0", "activation 2", "activation 0.500"]
        assert HOSTILE in session.find_element(By.ID, "examples").text
        assert "(chosen)" in session.find_element(By.ID, "steering").text
        assert "rank 2" in session.find_element(By.ID, "scores").text  # S_out of latent 3 below latent 4's
        assert "UP rank 1, DOWN rank 2 (by DeltaC_1)" in session.find_element(By.ID, "scores").text
        assert "topic:art" in session.find_element(By.ID, "cards").text
        assert screenshot_spread(session) > 20
        session.get(session.current_url.replace("#3", "#299"))  # another data file, loaded on demand
        WebDriverWait(session, 10).until(lambda s: "latent 299" in s.find_element(By.ID, "title").text)
        assert "not among the SAE's scored latents" in session.find_element(By.ID, "examples").text
        session.get(session.current_url.replace("#299", "#100000"))  # past the SAE's end: said, no file asked for
        WebDriverWait(session, 10).until(lambda s: "not in this SAE" in s.find_element(By.ID, "explanation").text)
        assert [m for m in session.get_log("browser") if m["level"] == "SEVERE"] == []


def test_the_lake_index_links_the_dashboard_and_the_report(site):
    lake = site.parent.parent
    with chromium() as session:
        assert open_page(session, lake / "index.html") == []
        session.find_element(By.LINK_TEXT, "topk-k8").click()
        assert session.find_element(By.ID, "count").text == str(D_SAE)
        session.find_element(By.LINK_TEXT, "report").click()
        assert session.find_element(By.TAG_NAME, "h1").text == "report"
