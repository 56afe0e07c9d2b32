"""The report of the presets' ensembles (auto and best): every section, tables rather than dicts,
a curve per member, the representation member named, and tables that fit a 1280-pixel window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import collabkit as ck
from collabkit.checkpoint import save_model
from collabkit.interpret.report import write_report
from collabkit.train.auto import build_auto
from collabkit.train.build import build_model
from tests.conftest import make_ratings

CHROMIUM = "/usr/bin/chromium"
#: auto's candidates here: small, so the module runs in seconds (best is the preset as it is)
SMALL = (
    "baseline",
    "dot-bias(n_factors=8, epochs=20, lr_max=3e-2, wd=0.01)",
    "ordinal(n_factors=8, epochs=20, lr_max=3e-2, wd=0.01)",
)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """preset -> (its report's folder, report.json's data)."""
    root = tmp_path_factory.mktemp("reports")
    data = make_ratings(n_users=70, n_items=50, density=0.3, seed=5)
    train, test = ck.random_split(data, 0.2, seed=0)
    out = {}
    for name in ("auto", "best"):
        model, history = build_auto(train, candidates=SMALL, budget=120) if name == "auto" else build_model("best", train)
        save_model(model, root / name, items=data.items, extra={"history": history.rows})
        result = write_report(root / name, root / f"{name}-report", train, test, baselines=["mean", "baseline"])
        out[name] = (root / f"{name}-report", result)
    return out


@pytest.mark.parametrize("name", ["auto", "best"])
def test_every_section_is_drawn_for_the_presets(reports, name):
    folder, result = reports[name]
    for section in ("model", "training", "biases", "pca", "similar", "compare", "groups"):
        assert result[section] is not None, section  # drawn, not "not applicable"
    page = (folder / "index.html").read_text()
    assert page.count("representation member: member ") == 3  # biases, map, similar
    assert "{&#x27;" not in page and "{&quot;" not in page  # no dict printed as text
    assert "Members" in page and "Training seconds per member" in page
    members = {row["member"] for row in result["training"]}
    assert len(members) > 1 and "training-chart" in page


def test_the_auto_report_shows_its_choices_as_tables(reports):
    folder, result = reports["auto"]
    page = (folder / "index.html").read_text()
    assert "Weights by support bucket" in page and "Candidates tried, skipped or dropped" in page
    assert "Pairs with an unknown user or item: the baseline predictor of baseline" in page
    assert "the form that erred least out of fold" in page
    auto = result["model"]["auto"]
    assert auto["support"]["buckets"] and all("status" in c for c in auto["candidates"])
    json.loads((folder / "report.json").read_text())  # strict JSON


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium")
@pytest.mark.parametrize("name", ["auto", "best"])
def test_the_reports_tables_fit_a_1280_pixel_window(reports, name):
    from playwright.sync_api import sync_playwright

    folder, _ = reports[name]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto((folder / "index.html").as_uri())
        page_width = page.evaluate("document.documentElement.scrollWidth")
        overflow = page.eval_on_selector_all(
            "table", "ts => ts.filter(t => t.scrollWidth > t.clientWidth + 1).map(t => t.caption ? t.caption.textContent : t.rows[0].textContent)"
        )
        browser.close()
    assert page_width <= 1280 and overflow == [], overflow


def test_the_auto_report_says_what_its_time_offsets_do(tmp_path):
    from tests.train.test_auto import rated_in_sessions

    train, test = ck.random_split(rated_in_sessions(0.6), 0.2, seed=1)
    model, history = build_auto(train, candidates=SMALL, budget=120)
    save_model(model, tmp_path / "m", extra={"history": history.rows})
    write_report(tmp_path / "m", tmp_path / "report", train, test, baselines=["mean"])
    page = (tmp_path / "report" / "index.html").read_text()
    shift = model.meta["auto"]["time_offsets"]
    assert (f"Time offsets (each user's shift near a rating's time: kernel width {shift['scale']:g} s, "
            f"shrinkage {shift['reg']:g}, {shift['points']} user-seconds of training residuals)") in page
