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
    return f"{value:.4g}" if isinstance(value, float) else str(value)[:60]


def _figure(ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(1, ncols, figsize=(5 * ncols, 3), dpi=100, squeeze=False)


def _embed(plt, fig, title: str) -> dg.MetadataValue:
    """The figure as PNG embedded in markdown, so the UI shows it inline."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})")


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
