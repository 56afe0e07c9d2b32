"""The one way the HTML files draw: Plotly figures in a self-contained page (Plotly's JS inline).

A page written by the CLI must open offline, so ``html_page`` embeds the plotly.min.js that ships
in the ``plotly`` package (about 4.8 MB, once per page) instead of pointing at a CDN. Plotly
reads text in a figure (labels, hover text, titles) as its own small HTML subset, so text from
data goes through ``plain`` first; the figure JSON itself is written by Plotly with ``<``
escaped as ``\\u003c``, so no string in it can close the script.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

PAGE_CSS = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1,h2{font-weight:600}
.chart{width:100%;max-width:900px}
table{border-collapse:collapse;margin:0.5em 0;font-size:0.85em;display:block;max-width:100%;overflow-x:auto}
td,th{border:1px solid #ccc;padding:2px 6px;white-space:pre-line;overflow-wrap:anywhere;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums} caption{text-align:left;font-weight:600}
"""

CHART = "<div class='chart'>"  # what a figure starts with: the page then needs Plotly
CONFIG = {"displaylogo": False, "responsive": True}  # no "edit in Chart Studio" link either


def plain(text: object) -> str:
    """``text`` as Plotly shows it literally: its markup characters (&, <, >) escaped."""
    return html.escape(str(text), quote=False)


def figure_html(fig: go.Figure, div_id: str, height: int = 500) -> str:
    """``fig`` as a <div> and the script that draws it; needs the page's Plotly (``html_page``)."""
    fig.update_layout(template="plotly_white", height=height)
    inner = fig.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG, default_width="100%"
    )
    return f"{CHART}{inner}</div>"


#: what marks a page collabkit wrote (an output may replace only its own earlier output: files.claim_file)
GENERATOR = "<meta name='generator' content='collabkit'>"


def html_page(title: str, body: str) -> str:
    """A self-contained page around ``body``: inline CSS, and Plotly's JS inline if it has charts."""
    script = ""
    if CHART in body:
        from plotly.offline import get_plotlyjs

        script = f"<script>{get_plotlyjs()}</script>"
    return (
        f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'>{GENERATOR}"
        f"<title>{html.escape(title)}</title><style>{PAGE_CSS}</style>{script}</head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def table_html(frame: pd.DataFrame, caption: str = "") -> str:
    """A DataFrame as an escaped HTML table; numbers right-aligned, floats to 4 significant digits."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for rec in frame.itertuples(index=False):
        cells = []
        for v in rec:
            if isinstance(v, (float, np.floating)):
                cells.append(f"<td class='num'>{'' if np.isnan(v) else f'{v:.4g}'}</td>")
            elif isinstance(v, (int, np.integer)):
                cells.append(f"<td class='num'>{v}</td>")
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
