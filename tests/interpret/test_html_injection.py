"""Hostile titles and ids reach the HTML pages as text only: no injected element, no script."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from conftest import make_ratings

from collabkit.checkpoint import save_model
from collabkit.core.loop import fit_one_cycle
from collabkit.data.split import random_split
from collabkit.interpret.pca import item_pca, save_html
from collabkit.interpret.report import write_report
from collabkit.models.dot import DotProductBias

HOSTILE = ["<img src=x onerror=alert(1)>", "</script><script>alert(2)</script>", "\"' onmouseover='alert(3)"]


class Page(HTMLParser):
    """Every tag with its attributes, the text of each <script>, and all text shown."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def _assert_safe(html_text: str) -> Page:
    page = Page()
    page.feed(html_text)
    assert not [t for t, _ in page.tags if t == "img"]
    assert all(not k.startswith("on") for _, attrs in page.tags for k in attrs)
    assert len(page.scripts) <= 1 and not any("alert" in s for s in page.scripts)
    assert "innerHTML" not in html_text  # the hover box fills itself with textContent
    shown = "".join(page.text)
    for title in HOSTILE:
        assert title in shown  # the title is shown literally
    return page


@pytest.fixture(scope="module")
def hostile_data():
    data = make_ratings(n_users=60, n_items=40)
    titles = data.items["title"].to_numpy().copy()
    titles[: len(HOSTILE)] = HOSTILE
    data.items["title"] = titles
    return data


def test_pca_html_shows_hostile_titles_as_text(hostile_data, tmp_path):
    model = DotProductBias.from_data(hostile_data, n_factors=4)
    pca = item_pca(model, 2, hostile_data, hostile_data.items)
    path = save_html(pca, tmp_path / "map.html", n=40)
    page = _assert_safe(path.read_text())
    infos = [a["data-info"] for t, a in page.tags if t == "g" and "data-info" in a]
    assert any(HOSTILE[0] in info for info in infos)  # the hover data keeps the title, as data


def test_report_shows_hostile_titles_as_text_and_escapes_once(hostile_data, tmp_path):
    train, test = random_split(hostile_data, 0.2, seed=3)
    model = DotProductBias.from_data(train, n_factors=4)
    history = fit_one_cycle(model, train, test, epochs=2, lr_max=0.05, wd=0.01, progress=False)
    save_model(model, tmp_path / "m", items=hostile_data.items, extra={"history": history.rows})
    write_report(tmp_path / "m", tmp_path / "report", train, test, baselines=["mean"], min_ratings=1, n_map=40)
    text = (tmp_path / "report" / "index.html").read_text()
    page = _assert_safe(text)
    shown = "".join(page.text)
    assert re.search(r'\{"n_factors": 4', shown) and "&quot;" not in shown  # escaped once, not twice
