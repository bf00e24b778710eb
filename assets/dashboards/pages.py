"""The lake's pages beside the dashboards: the report as HTML (the same text as report.md, its figures beside
it) and the lake-level index that links every SAE's dashboard and the report."""

from __future__ import annotations

import html
import re
from importlib import resources

from assets.dashboards.site import script_literal

# The pages beside each other in lake/reports/, and the dashboards' index.
PAGE_LINKS = [("report", "report.html"), ("IOI patching", "patching.html"),
              ("every SAE's dashboard", "../feature_dashboards/index.html")]
REPORT_STYLE = """
body { display: grid; grid-template-columns: 16em minmax(0, 1fr); gap: 2em; max-width: 90em; }
#toc { position: sticky; top: 1em; align-self: start; max-height: 95vh; overflow-y: auto; font-size: 13px; }
#toc ul { padding-left: 1em; margin: 0.2em 0; } main img { max-width: 100%; }
main table { display: block; overflow-x: auto; font-size: 13px; } main code { background: #f4f4f5; padding: 0 3px; }
@media (max-width: 60em) { body { display: block; } #toc { position: static; max-height: none; } }
"""


def _style() -> str:
    return (resources.files("assets.dashboards") / "templates" / "style.css").read_text()


def markdown_page(text: str, title: str, links: list[tuple[str, str]]) -> str:
    """A markdown document of the lake (the report, the patching report) as one HTML page with a table of
    contents beside it; links to sibling ``.md`` files point to their pages."""
    import markdown

    converter = markdown.Markdown(extensions=["tables", "toc", "fenced_code"])
    converter.preprocessors.deregister("html_block")  # the lake's text (a concept, an answer) is text, never HTML
    converter.inlinePatterns.deregister("html")
    body = converter.convert(re.sub(r"\]\(([\w-]+)\.md\)", r"](\1.html)", text))
    body = re.sub(r'href="\s*(javascript|data|vbscript):[^"]*"', 'href="#"', body, flags=re.IGNORECASE)
    nav = "".join(f'<a href="{html.escape(href)}">{html.escape(label)}</a>' for label, href in links)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_style()}{REPORT_STYLE}</style></head><body>"
            f'<aside id="toc"><nav>{nav}</nav>{converter.toc}</aside><main>{body}</main></body></html>\n')


def lake_index_page(saes: list[dict], report: str | None) -> str:
    """Every SAE's dashboard as a sortable table (model, SAE, kind and its headline figures), and the report."""
    digits = {"model": None, "sae": None, "kind": None, "latents": 0, "l0": 1, "explained_variance": 3, "mu": 3,
              "g": 3, "g_dtc": 3}
    columns = [{"key": k, "label": k.replace("_", " "), "num": d is not None, "digits": d} for k, d in digits.items()]
    data = script_literal({"columns": columns, "rows": saes})
    link = f'<a href="{html.escape(report)}">the report</a>' if report else "no report yet (materialize `report`)"
    common = (resources.files("assets.dashboards") / "templates" / "common.js").read_text()
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>sae-lake dashboards</title>
<style>{_style()}</style></head><body>
<h1>sae-lake: every SAE's feature dashboard</h1>
<p>{len(saes)} dictionaries; {link}. Click a column to sort, an SAE to open its dashboard.</p>
<div id="saes"></div>
<script>{common}</script>
<script>
const D = {data};
const columns = D.columns.map(c => c.key === "sae" ? {{...c, link: r => r.href}} : c);
document.getElementById("saes").append(sortableTable(columns, D.rows, {{id: "sae-table", sortKey: "model"}}));
</script></body></html>
"""
