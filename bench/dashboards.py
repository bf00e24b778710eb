"""Feature dashboards: how fast the pages are written and how large they are, for the demo lake's SAEs and for a
synthetic SAE of 16,384 latents, and how fast Chromium opens them.

- Writing: ``dashboard_files`` (every page and data file of one SAE) against the baseline measured in the same
  run, ``json.dumps`` of the same rows into one file: the floor any writer of these rows pays, so the ratio is
  the cost of laying them out as pages. Figures: latents (pages) written per second, bytes per latent.
- The synthetic SAE has the demo's per-latent density scaled to SAEBench's counts: 1,000 scored latents with
  29 windows of 21 tokens, 100 steered latents with 10 answers of 96 words at each of 7 factors; every latent a
  histogram, a logit lens and its output scores.
- Opening (``--browser``): headless Chromium opens the 16,384-latent index from file:// and then the page of
  its last latent (the last data file); the time is from navigation to the rows (or the latent) drawn.

    python bench/dashboards.py --lake lake           # the demo lake's SAEs and the synthetic one
    python bench/dashboards.py --lake lake --browser # and the pages' opening times in Chromium
"""

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assets.dashboards.site import SAETables, dashboard_files  # noqa: E402

PER_PAGE = 256


def _lake_tables(lake_root: Path) -> list[tuple[str, str, SAETables]]:
    from assets.lakehouse.lake import Lake

    lake = Lake(lake_root)
    out = []
    for model in lake.partitions("latent_stats", "model"):
        for sae in lake.partitions(f"latent_stats/model={model}", "sae"):
            tables = {f.name: lake.rows(f.name, model=model, sae=sae) for f in fields(SAETables)}
            out.append((model, sae, SAETables(**tables)))
    return out


def _synthetic(d_sae: int = 16_384, scored: int = 1000, steered: int = 100, seed: int = 0) -> SAETables:
    rng = random.Random(seed)
    stats = [{"latent": f, "firing_frequency": rng.random() / 100, "max_activation": 1 + 9 * rng.random(),
              "mean_activation": rng.random(), "token_eta2": rng.random(), "contextual": False} for f in range(d_sae)]
    profiles = [{"latent": f, "histogram_max": 5.0, "histogram": [rng.randrange(200) for _ in range(50)],
                 "histogram_tokens": 200_000,
                 "lens_top_tokens": [f"tok{rng.randrange(9999)}" for _ in range(10)],
                 "lens_top_logits": [round(rng.gauss(5, 1), 4) for _ in range(10)],
                 "lens_bottom_tokens": [f"tok{rng.randrange(9999)}" for _ in range(10)],
                 "lens_bottom_logits": [round(rng.gauss(-5, 1), 4) for _ in range(10)]} for f in range(d_sae)]
    chosen = rng.sample(range(d_sae), scored)
    scores = [{"latent": f, "lens_tokens": [f"tok{rng.randrange(9999)}" for _ in range(20)], "lens_rank": 3,
               "lens_prob": rng.random(), "output_score": rng.random(), "delta_c1": rng.gauss(0, 1),
               "delta_c5": rng.gauss(0, 1), "delta_c1_zeroed": None, "delta_c5_zeroed": None, "up_rank": f + 1,
               "down_rank": d_sae - f} for f in range(d_sae)]
    autointerp = [{"latent": f, "explanation": f"the word 'bank' in text about money and finance, topic {f % 97}",
                   "detection_score": rng.random(),
                   "detection_balanced": rng.random(), "detect_windows": 14, "detect_positive": 4,
                   "simulation_score": rng.random(), "purity_feature": None} for f in chosen]
    examples = [{"latent": f, "kind": kind, "rank": r, "doc_id": 0, "pos": 10, "score": 1.0,
                 "tokens": [rng.randrange(50_000) for _ in range(21)],
                 "acts": [round(max(0.0, rng.gauss(0, 2)), 3) for _ in range(21)]}
                for f in chosen for kind, n in (("top", 12), ("importance", 7), ("random", 10)) for r in range(n)]
    concepts = [{"latent": f, "concept": f"topic {f % 97}", "best_factor": 2.0, "test_hm": rng.random(),
                 "unsteered_test_hm": rng.random()} for f in chosen[:steered]]
    answers = [{"latent": f, "factor": factor, "instruction_id": f"i{i}", "split": "test" if i >= 5 else "dev",
                "instruction": "Tell me about the history of jazz in a few sentences.",
                "generation": " ".join(f"word{rng.randrange(999)}" for _ in range(96))}
               for f in chosen[:steered] for factor in (0.0, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0) for i in range(10)]
    ratings = [{"latent": a["latent"], "factor": a["factor"], "instruction_id": a["instruction_id"],
                "concept_rating": 1, "instruct_rating": 2, "fluency_rating": 1, "hm": 1.2} for a in answers]
    return SAETables(stats, profiles, autointerp, examples, scores, concepts, ratings, answers)


def _time_one(model: str, sae: str, tables: SAETables, out: Path) -> dict:
    start = time.perf_counter()
    baseline = json.dumps({f.name: getattr(tables, f.name) for f in fields(SAETables)}, default=str)
    (out / "baseline.json").write_text(baseline)
    floor = time.perf_counter() - start
    start = time.perf_counter()
    d_sae = max(r["latent"] for r in tables.latent_stats) + 1
    files = dashboard_files(model, sae, tables, lambda t: f" t{t}", PER_PAGE, d_sae, [("L0", "1.0")])
    for name, text in files.items():
        (out / sae / name).parent.mkdir(parents=True, exist_ok=True)
        (out / sae / name).write_text(text)
    seconds = time.perf_counter() - start
    return {"latents": len(tables.latent_stats), "seconds": seconds, "floor": floor,
            "bytes": sum(len(t.encode()) for t in files.values()), "site": out / sae}


def _browser(site: Path, last: int) -> tuple[float, float]:
    from tests.browser import chromium

    with chromium() as session:
        session.get(site.joinpath("index.html").resolve().as_uri())
        index_ms = float(session.execute_script("return document.body.dataset.renderedMs"))
        session.get(site.joinpath("latent.html").resolve().as_uri() + f"#{last}")
        for _ in range(200):
            rendered = session.execute_script("return document.body.dataset.renderedMs")
            if rendered:
                break
            time.sleep(0.05)
        return index_ms, float(rendered)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", type=Path, help="a demo lake (its SAEs' dashboards are written again, elsewhere)")
    parser.add_argument("--browser", action="store_true", help="open the synthetic SAE's pages in Chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print("| SAEs | latents | pages written / s | baseline (json.dumps) / s | site / baseline time | "
              "bytes per latent | MB per 1,000 latents |")
        print("|---|---|---|---|---|---|---|")
        if args.lake:
            runs = [_time_one(m, f"{m}-{s}", t, Path(tmp)) for m, s, t in _lake_tables(args.lake)]
            _row(f"the lake's {len(runs)}", runs)
        synthetic = _time_one("synthetic", "synthetic-16k", _synthetic(), Path(tmp))
        _row("synthetic, 16,384 latents", [synthetic])
        if args.browser:
            index_ms, latent_ms = _browser(synthetic["site"], synthetic["latents"] - 1)
            print(f"\nChromium, the synthetic SAE from file://: index drawn {index_ms:.0f} ms after navigation "
                  f"(100 of 16,384 rows shown, all sortable); latent {synthetic['latents'] - 1} (the last data "
                  f"file) drawn {latent_ms:.0f} ms after navigation")


def _row(label: str, runs: list[dict]) -> None:
    latents = sum(r["latents"] for r in runs)
    seconds, floor = sum(r["seconds"] for r in runs), sum(r["floor"] for r in runs)
    per_latent = [r["bytes"] / r["latents"] for r in runs]
    print(f"| {label} | {latents:,} | {latents / seconds:,.0f} | {latents / floor:,.0f} | "
          f"**{seconds / floor:.2f}x** | {statistics.median(per_latent):,.0f} (median) | "
          f"{statistics.median(per_latent) * 1000 / 2**20:.2f} |")


if __name__ == "__main__":
    main()
