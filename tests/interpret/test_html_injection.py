"""Hostile titles and ids reach the HTML pages as text only: no injected element, no script."""

from __future__ import annotations

import html
import re
from pathlib import Path

import plotly_page
import pytest

from collabkit.checkpoint import save_model
from collabkit.core.loop import fit_one_cycle
from collabkit.data.split import random_split
from collabkit.interpret.pca import item_pca, save_html
from collabkit.interpret.report import write_report
from collabkit.models.dot import DotProductBias
from tests.conftest import make_ratings

HOSTILE = ["<img src=x onerror=alert(1)>", "</script><script>alert(2)</script>", "\"' onmouseover='alert(3)"]
CHROMIUM = "/usr/bin/chromium"
MARKUP = HOSTILE[:2]  # the titles with tags in them (quotes mean nothing to Plotly's text)


def _assert_safe(html_text: str) -> tuple[plotly_page.Page, list[str]]:
    """No element or handler injected, no script broken out of; returns the page and the text
    its charts show (Plotly reads its own markup in text, so titles must arrive escaped)."""
    page = plotly_page.parse(html_text)
    assert not page.external and plotly_page.has_inline_plotly(page)
    assert all(not k.startswith("on") for _, attrs in page.tags for k in attrs)
    figures = plotly_page.figures(html_text)
    assert len(page.scripts) == 1 + len(figures)  # Plotly, then one per chart: none broken out of
    for script in page.scripts:
        assert not any(title in script for title in MARKUP)  # "<" is written as \u003c
    traces = [t for fig in figures.values() for t in fig]
    charted = [str(v) for t in traces for key in ("text", "hovertext") for v in t.get(key, [])]
    for title in MARKUP:
        assert not any(title in c for c in charted)  # never raw to Plotly's markup
    return page, charted


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
    _, charted = _assert_safe(path.read_text())
    for title in HOSTILE:  # labelled and in the hover text, escaped for Plotly: shown literally
        assert html.escape(title, quote=False) in charted
        assert any(c.startswith(f"<b>{html.escape(title, quote=False)}</b>") for c in charted)


def test_report_shows_hostile_titles_as_text_and_escapes_once(hostile_data, tmp_path):
    train, test = random_split(hostile_data, 0.2, seed=3)
    model = DotProductBias.from_data(train, n_factors=4)
    history = fit_one_cycle(model, train, test, epochs=2, lr_max=0.05, wd=0.01, progress=False)
    save_model(model, tmp_path / "m", items=hostile_data.items, extra={"history": history.rows})
    write_report(tmp_path / "m", tmp_path / "report", train, test, baselines=["mean"], min_ratings=1, n_map=40)
    text = (tmp_path / "report" / "index.html").read_text()
    page, charted = _assert_safe(text)
    shown = "".join(page.text)
    for title in HOSTILE:
        assert html.escape(title, quote=False) in charted  # the map shows the title literally
    assert re.search(r"n_factors=4\b", shown) and "&quot;" not in shown  # escaped once, not twice


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium")
def test_pca_html_in_a_browser_draws_hostile_titles_as_text_and_fetches_nothing(hostile_data, tmp_path):
    from playwright.sync_api import sync_playwright

    model = DotProductBias.from_data(hostile_data, n_factors=4)
    path = save_html(item_pca(model, 2, hostile_data, hostile_data.items), tmp_path / "map.html", n=40)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        dialogs, fetched = [], []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: fetched.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_selector("#item-map g.textpoint")
        labels = page.eval_on_selector_all("#item-map g.textpoint text", "es => es.map(e => e.textContent)")
        injected = page.eval_on_selector_all("#item-map img, #item-map script", "es => es.length")
        browser.close()
    assert len(labels) == 40 and set(HOSTILE) <= set(labels)  # drawn literally
    assert not dialogs and not injected
    assert fetched == [path.as_uri()]  # Plotly came inline: nothing else was requested
