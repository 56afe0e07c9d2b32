"""Read back the Plotly figures, scripts and external references of a page the CLI writes."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import numpy as np


class Page(HTMLParser):
    """Every tag with its attributes, the text of each <script>, the text shown, outside links."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self.external: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")
        for key in ("src", "href"):
            if a.get(key, "").startswith(("http", "//")):
                self.external.append(a[key])
        if tag in ("link", "iframe", "img") or (tag == "script" and "src" in a):
            self.external.append(tag)

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def figures(text: str) -> dict[str, list[dict]]:
    """div id -> the traces Plotly.newPlot draws there, decoded from the page's scripts."""
    found = {}
    for m in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', text):
        traces, _ = json.JSONDecoder().raw_decode(text, m.end())
        found[m.group(1)] = _plain(traces)
    return found


def _plain(v):
    """Plotly's packed numpy arrays ({"dtype": "f8", "bdata": base64}) back to lists."""
    if isinstance(v, dict) and set(v) >= {"dtype", "bdata"}:
        flat = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return flat.reshape(v["shape"]).tolist() if "shape" in v else flat.tolist()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return [_plain(x) for x in v] if isinstance(v, list) else v


def has_inline_plotly(page: Page) -> bool:
    """Plotly's own bundle is in the page (a script of several MB), not fetched."""
    return any(len(s) > 1_000_000 and "plotly.js" in s for s in page.scripts)
