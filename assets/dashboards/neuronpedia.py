"""An SAE's latents in the batch JSON layout that SAEDashboard's Neuronpedia runner writes (``batch-<n>.json``:
``model_id``, ``layer``, ``sae_set``, ``sae_id_suffix`` and ``features``, each with its logit lens, activation
histogram and example windows), and its explanations beside them (``explanations.jsonl``), ready for Neuronpedia's
upload.

What sae-lake does not compute is left at the runner's empty defaults (neuron alignment, correlated features and
neurons, the logits histogram, the decoder weights' distribution by head, the steering vector). The layout is
sae-dashboard 0.8.0's."""

from __future__ import annotations

import json
from collections import defaultdict

from assets.dashboards.site import json_safe

EMPTY_LISTS = ("neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
               "correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
               "correlated_features_indices", "correlated_features_l1", "correlated_features_pearson")


def _activations(windows: list[dict], token_text, max_activation: float) -> list[dict]:
    """The latent's windows in the runner's groups: the top-activating ones first, in its top group (``bin_min``
    -1, ``bin_max`` the largest activation seen, held-out or in a window; ``bin_contains`` -1), then the
    importance-weighted and the random ones, each kind one group over the whole range (0 to that activation,
    ``bin_contains`` 1), where the runner has quantile intervals. ``qualifying_token_index`` is the window's
    centre, the token it was drawn for; a window's padding past the edge of its document is left out."""
    top = round(max([float(max_activation)] + [float(a) for w in windows for a in w["acts"]]), 3)
    out = []
    for w in sorted(windows, key=lambda w: (w["kind"] != "top", w["kind"], w["rank"])):
        centre = len(w["tokens"]) // 2
        kept = [(token_text(t), round(float(a), 3)) for t, a in zip(w["tokens"], w["acts"], strict=True) if t >= 0]
        group = (-1, top, -1) if w["kind"] == "top" else (0, top, 1.0)
        out.append({"bin_min": group[0], "bin_max": group[1], "bin_contains": group[2],
                    "tokens": [t for t, _ in kept], "values": [a for _, a in kept],
                    "qualifying_token_index": centre - sum(t < 0 for t in w["tokens"][:centre])})
    return out


def _histogram(profile: dict) -> tuple[list[float], list[float]]:
    """(bar centres, bar heights) of the activation histogram; none for a latent that never fired."""
    if not any(profile["histogram"]):
        return [], []
    bins = len(profile["histogram"])
    width = profile["histogram_max"] / bins
    return [round((i + 0.5) * width, 3) for i in range(bins)], [float(c) for c in profile["histogram"]]


def neuronpedia_feature(profile: dict, stats: dict, windows: list[dict], token_text, prompts: int,
                        tokens_per_prompt: int, dataset: str) -> dict:
    """One latent as a ``features`` entry of a batch file."""
    values, heights = _histogram(profile)
    return {"feature_index": int(profile["latent"]), **{k: [] for k in EMPTY_LISTS},
            "neg_str": profile["lens_bottom_tokens"], "neg_values": profile["lens_bottom_logits"],
            "pos_str": profile["lens_top_tokens"], "pos_values": profile["lens_top_logits"],
            "frac_nonzero": float(stats["firing_frequency"]),
            "freq_hist_data_bar_values": values, "freq_hist_data_bar_heights": heights,
            "logits_hist_data_bar_heights": [], "logits_hist_data_bar_values": [],
            "n_prompts_total": prompts, "n_tokens_in_prompt": tokens_per_prompt, "dataset": dataset,
            "decoder_weights_dist": [], "vector": [],
            "activations": _activations(windows, token_text, stats["max_activation"])}


def neuronpedia_files(model_id: str, layer: int, sae_set: str, profiles: list[dict], stats: list[dict],
                      examples: list[dict], explanations: list[dict], token_text, per_batch: int, prompts: int,
                      tokens_per_prompt: int, dataset: str) -> dict[str, str]:
    """Every file of one SAE's export, by name: ``batch-<n>.json`` of ``per_batch`` latents each, and
    ``explanations.jsonl`` (one line per explained latent)."""
    by_latent = defaultdict(list)
    for w in examples:
        by_latent[int(w["latent"])].append(w)
    stats_of = {int(s["latent"]): s for s in stats}
    features = [neuronpedia_feature(p, stats_of[int(p["latent"])], by_latent[int(p["latent"])], token_text, prompts,
                                    tokens_per_prompt, dataset) for p in sorted(profiles, key=lambda p: p["latent"])]
    files = {f"batch-{i // per_batch}.json": _json({"model_id": model_id, "layer": layer, "sae_set": sae_set,
                                                    "sae_id_suffix": None, "features": features[i:i + per_batch]})
             for i in range(0, len(features), per_batch)}
    files["explanations.jsonl"] = "".join(
        _json({"modelId": model_id, "layer": f"{layer}-{sae_set}", "index": str(e["latent"]),
               "description": e["explanation"],
               "scores": {"detection": e["detection_score"], "simulation": e["simulation_score"]}}) + "\n"
        for e in sorted(explanations, key=lambda e: e["latent"]) if e["explanation"])
    return files


def _json(value) -> str:
    return json.dumps(json_safe(value), allow_nan=False)


class ExportError(ValueError):
    """Nothing to export, named."""


def export_lake(out, model: str | None, sae: str | None, per_batch: int) -> list[tuple[str, int]]:
    """Write the export of every SAE of the lake with latent profiles (or of ``model`` / ``sae``) under
    ``out/<model>/<sae>/``; each SAE's folder is replaced whole. Returns (folder, latents) per SAE."""
    from pathlib import Path

    from assets.lakehouse.config import load_settings, open_lake
    from assets.lakehouse.registry import model_location
    from sae_models.evals.autointerp import TokenText
    from sae_models.lm import load_tokenizer

    settings = load_settings()
    lake = open_lake(settings)
    models = [m for m in lake.partitions("latent_profiles", "model") if model in (None, m)]
    pairs = [(m, s) for m in models for s in lake.partitions(f"latent_profiles/model={m}", "sae") if sae in (None, s)]
    if not pairs:
        raise ExportError(f"no latent_profiles in {lake.uri('latent_profiles')} for model {model or 'any'}, SAE "
                          f"{sae or 'any'}: materialize feature_dashboards first")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for m, s in pairs:
        entry = settings.model(m)
        text = TokenText(load_tokenizer(model_location(entry, lake), entry.revision, entry.trust_remote_code))

        def rows(table: str, m=m, s=s) -> list[dict]:
            return lake.rows(table, model=m, sae=s)
        profiles = rows("latent_profiles")
        files = neuronpedia_files(m, entry.layer, s, profiles, rows("latent_stats"), rows("latent_examples"),
                                  rows("autointerp"), lambda t, text=text: text([t])[0], per_batch,
                                  settings.corpus.activation_docs, settings.extraction.context, "sae-lake corpus")
        written.append((str(_write_folder(root / m / s, files)), len(profiles)))
    return written


def _write_folder(target, files: dict[str, str]):
    """Replace the folder ``target`` by one holding ``files``, all at once: a crash leaves the old one or the
    new one, never a mix, and no staging folder behind."""
    import shutil
    import tempfile
    from pathlib import Path

    from assets.lakehouse.lake import swap_in

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-"))
    try:
        staging.chmod(0o755)
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
