"""Materialization metadata: row counts, schema, previews and plots as markdown images."""

from __future__ import annotations

import base64
import io

import dagster as dg
import numpy as np
import pyarrow as pa


def table_metadata(table: pa.Table, preview_rows: int = 5) -> dict[str, dg.MetadataValue]:
    preview = table.slice(0, preview_rows).to_pylist()
    columns = [dg.TableColumn(f.name, str(f.type)) for f in table.schema]
    return {
        "dagster/row_count": dg.MetadataValue.int(table.num_rows),
        "dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns)),
        "preview": dg.MetadataValue.md(markdown_table(preview)),
    }


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(empty)"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)[:60]


def _figure(ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(1, ncols, figsize=(5 * ncols, 3), dpi=100, squeeze=False)


def _png(plt, fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def page_links(uri: str) -> dict[str, dg.MetadataValue]:
    """A written page as metadata: its path, and on a local lake a file:// link the UI opens in the browser."""
    from pathlib import Path

    local = "://" not in uri
    return {"page": dg.MetadataValue.path(uri), **({"open": dg.MetadataValue.url(Path(uri).as_uri())} if local else {})}


def image_md(png: bytes, title: str) -> dg.MetadataValue:
    """A PNG embedded in markdown, so the UI shows it inline."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _embed(plt, fig, title: str) -> dg.MetadataValue:
    return image_md(_png(plt, fig), title)


def histogram_md(values: np.ndarray, title: str, xlabel: str) -> dg.MetadataValue:
    plt, fig, axes = _figure()
    axes[0, 0].hist(values, bins=60, color="#4c72b0")
    axes[0, 0].set(title=title, xlabel=xlabel, ylabel="tokens")
    return _embed(plt, fig, title)


def curves_md(history: list[dict], keys: list[str], title: str) -> dg.MetadataValue:
    """Training curves, one panel per key, against the step."""
    plt, fig, axes = _figure(len(keys))
    steps = [row["step"] for row in history]
    for ax, key in zip(axes[0], keys, strict=True):
        ax.plot(steps, [row[key] for row in history], color="#4c72b0")
        ax.set(title=f"{title}: {key}", xlabel="step")
    return _embed(plt, fig, title)


def lines_md(rows: list[dict], x: str, keys: list[str], title: str, xlabel: str) -> dg.MetadataValue:
    """One line per key against ``x`` (e.g. mean steering ratings against the factor), in one panel."""
    plt, fig, axes = _figure()
    ax = axes[0, 0]
    for i, key in enumerate(keys):
        ax.plot([r[x] for r in rows], [r[key] for r in rows], marker="o", color=f"C{i}", label=key)
    ax.set(title=title, xlabel=xlabel)
    ax.legend(fontsize=7)
    return _embed(plt, fig, title)


def kind_bars(rows: list[dict], panels: list[tuple[str, str]], title: str):
    """[C23] Figure 2 style: per panel (value key, title), one bar per dictionary kind and model with its 95%
    interval (``<key>_ci``) as PNG bytes; baselines have dark edges."""
    plt, fig, axes = _figure(len(panels))
    models = sorted({r["model"] for r in rows})
    kinds = list(dict.fromkeys(r["kind"] for r in sorted(rows, key=lambda r: (r["is_baseline"], r["kind"]))))
    width = 0.8 / max(len(models), 1)
    for ax, (key, panel_title) in zip(axes[0], panels, strict=True):
        for m, model in enumerate(models):
            by_kind = {r["kind"]: r for r in rows if r["model"] == model}
            x = [i + (m - (len(models) - 1) / 2) * width for i, k in enumerate(kinds) if k in by_kind]
            present = [k for k in kinds if k in by_kind]
            ax.bar(x, [by_kind[k][key] for k in present], width, yerr=[by_kind[k][f"{key}_ci"] for k in present],
                   capsize=2, label=model, color=f"C{m}",
                   edgecolor=["0.3" if by_kind[k]["is_baseline"] else f"C{m}" for k in present])
        ax.set_xticks(range(len(kinds)), kinds, rotation=35, ha="right", fontsize=8)
        ax.set(title=panel_title)
        ax.axhline(0, color="0.5", lw=0.5)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _png(plt, fig)


def materialized(record: dict, metadata: dict | None = None, asset_key: str | None = None) -> dg.MaterializeResult:
    """A materialization that carries what it was built from: the settings fingerprint as its data version
    (so downstream partitions built on an older one show as stale) and the settings as metadata."""
    return dg.MaterializeResult(
        asset_key=asset_key, data_version=dg.DataVersion(record["fingerprint"]),
        metadata={**(metadata or {}), "config_fingerprint": record["fingerprint"],
                  "settings": dg.MetadataValue.json(record["settings"])},
    )


def mu_vs_g_png(saes: list[dict], baselines: list[dict], panels: list[tuple[str, str]], title: str) -> bytes:
    """Per panel (y key, panel title): mu against that steering score, one point per SAE coloured by
    architecture (marker by model), the baseline dictionaries as labelled grey crosses, and the trivial floors
    as dashed lines: mean "always no" mu (vertical) and mean unsteered g (horizontal)."""
    plt, fig, axes = _figure(len(panels))
    architectures = sorted({r["architecture"] for r in saes})
    models = sorted({r["model"] for r in saes + baselines})
    markers = {m: "os^Dv<>ph"[i % 9] for i, m in enumerate(models)}
    floors = [r["mu_always_no"] for r in saes if r["mu_always_no"] is not None]
    unsteered = [r["g_unsteered"] for r in saes if r["g_unsteered"] is not None]
    for ax, (key, panel_title) in zip(axes[0], panels, strict=True):
        for i, arch in enumerate(architectures):
            labelled = False
            for model in models:
                pts = [r for r in saes if r["architecture"] == arch and r["model"] == model and r[key] is not None
                       and r["mu"] is not None]
                ax.scatter([r["mu"] for r in pts], [r[key] for r in pts], color=f"C{i}", marker=markers[model],
                           s=22, label=None if labelled or not pts else arch)
                labelled = labelled or bool(pts)
        for r in baselines:
            if r[key] is not None and r["mu"] is not None:
                ax.scatter(r["mu"], r[key], color="0.4", marker="x", s=22)
                ax.annotate(r["sae"], (r["mu"], r[key]), fontsize=6, color="0.4")
        if floors:
            ax.axvline(float(np.mean(floors)), color="0.6", ls="--", lw=0.8)
        if unsteered:
            ax.axhline(float(np.mean(unsteered)), color="0.6", ls="--", lw=0.8)
        ax.set(title=panel_title, xlabel="mu (detection score)", ylabel=key)
    axes[0, 0].legend(fontsize=6, title=" / ".join(f"{markers[m]} {m}" for m in models), title_fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _png(plt, fig)


def tau_bars_png(rows: list[dict], comparisons: list[str], title: str) -> bytes:
    """One panel per comparison: Kendall tau-b per group (overall, each architecture, sparsity level, model)
    with its 95% BCa interval; a group whose tau-b is null is named with "null"."""
    plt, fig, axes = _figure(len(comparisons))
    fig.set_size_inches(4 * len(comparisons), 4.5)
    for ax, comparison in zip(axes[0], comparisons, strict=True):
        mine = [r for r in rows if r["comparison"] == comparison and r["grouping"] != "psi"]
        labels = [f"{r['grouping']}: {r['group']}" if r["grouping"] != "overall" else "overall" for r in mine]
        y = np.arange(len(mine))[::-1]
        for yi, r in zip(y, mine, strict=True):
            if r["tau_b"] is None:
                ax.text(0, yi, "null", fontsize=6, va="center", color="0.4")
                continue
            # a BCa interval need not contain the estimate (small, tied samples): clamp, never a negative bar
            err = ([[max(0.0, r["tau_b"] - r["ci_low"])], [max(0.0, r["ci_high"] - r["tau_b"])]]
                   if r["ci_low"] is not None else None)
            ax.barh(yi, r["tau_b"], xerr=err, capsize=2, color="C3" if r["grouping"] == "overall" else "C0")
        ax.set_yticks(y, labels, fontsize=6)
        ax.axvline(0, color="0.5", lw=0.5)
        ax.set(title=comparison, xlabel="Kendall tau-b", xlim=(-1.05, 1.05))
    fig.suptitle(title, fontsize=9)
    return _png(plt, fig)


def control_png(rows: list[dict], metrics: list[str], title: str) -> bytes:
    """One panel per score: each dictionary's value on the trained model (x) against the same dictionary on the
    random-weights twin (y), coloured by architecture (marker by model, baselines as grey crosses), with the
    diagonal: a point below it scores higher trained than random."""
    plt, fig, axes = _figure(len(metrics))
    fig.set_size_inches(3.4 * len(metrics), 3.4)
    architectures = sorted({r["architecture"] for r in rows if not r["is_baseline"]})
    models = sorted({r["model"] for r in rows})
    markers = {m: "os^Dv<>ph"[i % 9] for i, m in enumerate(models)}
    for ax, metric in zip(axes[0], metrics, strict=True):
        mine = [r for r in rows if r["metric"] == metric and r["trained"] is not None and r["twin"] is not None]
        for r in mine:
            colour = "0.4" if r["is_baseline"] else f"C{architectures.index(r['architecture'])}"
            ax.scatter(r["trained"], r["twin"], color=colour, marker="x" if r["is_baseline"] else markers[r["model"]],
                       s=22)
        values = [v for r in mine for v in (r["trained"], r["twin"])]
        if values:
            low, high = min(values), max(values)
            pad = 0.05 * (high - low or 1)
            ax.plot([low - pad, high + pad], [low - pad, high + pad], color="0.6", ls="--", lw=0.8)
        ax.set(title=metric, xlabel="trained model", ylabel="random-weights twin")
    for i, arch in enumerate(architectures):
        axes[0, 0].scatter([], [], color=f"C{i}", label=arch, s=22)
    axes[0, 0].legend(fontsize=6, title=" / ".join(f"{markers[m]} {m}" for m in models) + " / x baselines",
                      title_fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _png(plt, fig)


KL_FLOOR = 1e-4  # a KL below it (an exact basis patched in full) is drawn at it on the log axis


def frontier_png(rows: list[dict], architecture: str, title: str) -> bytes:
    """Per model, two panels: latents patched and edit magnitude against the held-out KL (log scale, floored at
    ``KL_FLOOR``), one line per sparsity level of ``architecture`` (light: sparsest) and per baseline dictionary
    (PCA in black), over the thresholds each reaches. Lower and further left is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(max(1, len(models)), 2, figsize=(10, 3.2 * max(1, len(models))), dpi=100, squeeze=False)
    for (ax_n, ax_e), model in zip(axes, models, strict=False):
        mine = [r for r in rows if r["model"] == model and r["reached"]]
        saes = sorted({(r["level"], r["sae"]) for r in mine if r["architecture"] == architecture})
        colours = plt.cm.viridis(np.linspace(0.85, 0.1, max(1, len(saes))))
        lines = [(sae, {"color": c, "label": sae}) for (_, sae), c in zip(saes, colours, strict=True)]
        lines += [(sae, {"color": "black" if sae == "pca" else "0.6", "lw": 2 if sae == "pca" else 1, "ls": "--",
                         "label": sae}) for sae in sorted({r["sae"] for r in mine if r["is_baseline"]})]
        for sae, style in lines:
            pts = sorted((r for r in mine if r["sae"] == sae), key=lambda r: r["kl"])
            for ax, key in ((ax_n, "n_latents"), (ax_e, "edit")):
                ax.plot([max(r["kl"], KL_FLOOR) for r in pts], [r[key] for r in pts], marker="o", ms=3, **style)
        for ax, ylabel in ((ax_n, "latents patched"), (ax_e, "edit magnitude")):
            ax.set(xscale="log", xlabel="KL(p_cf || p_patched), held-out pairs (nats)", ylabel=ylabel, title=model)
        ax_n.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _png(plt, fig)


def ladder_png(rows: list[dict], level: str, panels: list[str], title: str) -> bytes:
    """One panel per score: its mean against ``level`` with the range of the rows at each level as a band, one line
    per model: a score that measures what the level degrades falls along it."""
    plt, fig, axes = _figure(len(panels))
    fig.set_size_inches(2.6 * len(panels), 2.8)
    models = sorted({r["model"] for r in rows})
    for ax, key in zip(axes[0], panels, strict=True):
        for i, model in enumerate(models):
            by_level: dict[float, list[float]] = {}
            for r in rows:
                if r["model"] == model and r.get(key) is not None:
                    by_level.setdefault(r[level], []).append(r[key])
            xs = sorted(by_level)
            if not xs:
                continue
            ax.plot(xs, [np.mean(by_level[x]) for x in xs], color=f"C{i}", marker="o", ms=3, label=model)
            ax.fill_between(xs, [min(by_level[x]) for x in xs], [max(by_level[x]) for x in xs], color=f"C{i}",
                            alpha=0.2, lw=0)
        ax.set(title=key, xlabel=level)
        ax.title.set_fontsize(8)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    return _png(plt, fig)
