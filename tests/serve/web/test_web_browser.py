"""End to end: the pages in Debian's Chromium (headless, driven by Playwright) against a real
uvicorn server on 127.0.0.1 serving a small model trained on generated, titled data.

Every request a page makes is recorded; any host other than 127.0.0.1 fails the test, and so
does any error in the page's console. Screenshots of every page go to $COLLABKIT_ARTIFACTS
(default ``out/screenshots`` in the checkout, which git ignores).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy.orm import Session

from collabkit.serve import Settings, migrate, rollout, store
from tests.serve.conftest import load_store, make_key
from tests.serve.test_rollout import Running

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
ARTIFACTS = Path(os.environ.get("COLLABKIT_ARTIFACTS") or Path(__file__).parents[3] / "out" / "screenshots")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing: apt-get install chromium"),
]


class Site:
    def __init__(self, base: str, writer: str, admin: str, candidate: int) -> None:
        self.base, self.writer, self.admin, self.candidate = base, writer, admin, candidate


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_data, tiny_model) -> Iterator[Site]:
    """The service on a SQLite store holding the tiny ratings: the tiny model live, a candidate."""
    url = f"sqlite:///{tmp_path_factory.mktemp('web') / 'collabkit.db'}"
    engine = store.make_engine(url)
    migrate.upgrade(engine)
    load_store(url, tiny_data)
    rollout.register(engine, tiny_model)
    with Session(engine) as s:
        metrics = {"rmse_candidate": 0.9, "rmse_live": 0.91, "tolerance": 0.01, "n_test": 100, "promoted": False}
        candidate = store.add_version(s, str(tiny_model), "dot-bias(n_factors=4)", metrics).id
    engine.dispose()
    writer, admin = make_key(url, "writer"), make_key(url, "admin")
    settings = Settings(db=url, reload_seconds=0, exposure_flush_seconds=0.2)
    with Running(settings) as base:
        yield Site(base, writer, admin, candidate)


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    expect.set_options(timeout=20_000)
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM,
            headless=True, args=ARGS, viewport={"width": 1280, "height": 900},
        )  # fmt: skip
        ctx.set_default_timeout(20_000)
        yield ctx
        ctx.close()


@pytest.fixture
def errors() -> list[str]:
    """The page's console errors (a test expecting failed requests removes those it expects)."""
    return []


@pytest.fixture
def page(context, errors):
    """A fresh tab; fails the test on a request to another host or a console error."""
    requests: list[str] = []
    tab = context.new_page()
    tab.on("request", lambda r: requests.append(r.url))
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    tab.close()
    hosts = {urlparse(u).hostname for u in requests if urlparse(u).scheme not in ("data", "blob", "about")}
    assert requests and hosts == {"127.0.0.1"}, f"requests outside 127.0.0.1: {hosts}"
    assert not errors, errors


def shoot(page, name: str) -> None:
    """Save a screenshot, after checking that every control on the page has a name."""
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
                   .filter(e => !e.labels.length && !e.getAttribute('aria-label'))
                 .concat([...document.querySelectorAll('button')]
                   .filter(b => !b.textContent.trim() && !b.getAttribute('aria-label')))
                 .map(e => e.outerHTML.slice(0, 80))"""
    )  # fmt: skip
    assert not unnamed, unnamed
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def items_of(page) -> list[str]:
    return page.locator("#recs li[data-item]").evaluate_all("els => els.map(e => e.dataset.item)")


def fits(page, width: int) -> None:
    """At ``width`` px nothing makes the page scroll sideways."""
    page.set_viewport_size({"width": width, "height": 800})
    page.wait_for_timeout(800)  # Plotly redraws its charts a moment after a resize
    wide = page.evaluate(
        """w => Array.from(document.querySelectorAll('body *'))
               .filter(e => e.getBoundingClientRect().right > w + 1 && !e.closest('.scroll'))
               .map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 5)""",
        width,
    )  # what sticks out (tables may scroll inside their .scroll box)
    assert page.evaluate("document.documentElement.scrollWidth") <= width, wide


def test_new_visitor_answers_ten_questions_then_rates_from_the_list(site, page):
    page.goto(f"{site.base}/#key={site.writer}")
    page.wait_for_selector("#card[data-item]")
    page.wait_for_selector("#recs[data-mode='average-taste'] li[data-item]")
    average = items_of(page)
    assert len(average) == 10 and "key=" not in page.url  # the key left the address bar
    rated = []
    page.keyboard.press("s")  # skip the first question with the keyboard
    for k in range(10):
        item = page.locator("#card").get_attribute("data-item")
        stars = 5 if int(item) % 2 else 1
        if k % 3 == 0:
            page.keyboard.press(str(stars))  # some answers by keyboard, the rest by click
        else:
            page.locator("#card").get_by_role("button", name=f"{stars} star", exact=False).nth(0).click()
        rated.append(item)
        page.wait_for_selector(f"#progress:has-text('{k + 1} answered')")
    page.wait_for_selector("#recs[data-mode='fold-in']")
    mine = items_of(page)
    assert len(mine) == 10 and mine != average and not set(rated) & set(mine)
    assert all(t.strip() for t in page.locator("#recs .because").all_inner_texts())
    assert page.locator("#recs .love").count() == 0  # dot-bias gives no distribution: no chance
    shoot(page, "start")
    fits(page, 360)
    shoot(page, "start-360px")

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{site.base}/for-you")
    page.wait_for_selector("#recs[data-mode='fold-in'] li[data-item]")
    assert page.input_value("#user").startswith("web-")
    before = items_of(page)
    assert before == mine
    first = page.locator("#recs li[data-item]").first
    first.get_by_role("button", name="4 stars").click()
    expect(page.locator(f"#recs li[data-item='{before[0]}']")).to_have_count(0)
    after = items_of(page)
    assert after != before and before[0] not in after and not set(rated) & set(after)
    shoot(page, "for-you")


@pytest.fixture(scope="module")
def ordinal_site(tmp_path_factory, tiny_data) -> Iterator[Site]:
    """The service with an ordinal model (it gives a distribution over the stars) live."""
    from collabkit.checkpoint import save_model
    from collabkit.serve.rollout import _train

    folder = tmp_path_factory.mktemp("web-ordinal")
    model = _train("ordinal(n_factors=4, epochs=8, lr_max=2e-2)", tiny_data)
    path = save_model(model, folder / "model", items=tiny_data.items)
    url = f"sqlite:///{folder / 'collabkit.db'}"
    engine = store.make_engine(url)
    migrate.upgrade(engine)
    load_store(url, tiny_data)
    rollout.register(engine, path)
    engine.dispose()
    settings = Settings(db=url, reload_seconds=0, exposure_flush_seconds=0.2)
    with Running(settings) as base:
        yield Site(base, make_key(url, "writer"), make_key(url, "admin"), 0)


def test_chance_of_loving_each_pick_where_the_model_gives_one(ordinal_site, page):
    love = r"^\d{1,3}% chance you'll love it \(4 stars or more\)$"
    page.goto(f"{ordinal_site.base}/#key={ordinal_site.writer}")
    page.wait_for_selector("#recs[data-mode='average-taste'] li[data-item]")
    page.wait_for_selector("#card[data-item]")
    for k, stars in enumerate((5, 1, 4)):
        page.keyboard.press(str(stars))
        page.wait_for_selector(f"#progress:has-text('{k + 1} answered')")
    page.wait_for_selector("#recs[data-mode='fold-in'] li[data-item]")
    chances = page.locator("#recs .love").all_inner_texts()
    assert len(chances) == len(items_of(page)) == 10
    assert all(re.match(love, t) for t in chances), chances
    shoot(page, "start-ordinal")

    page.goto(f"{ordinal_site.base}/for-you")
    page.fill("#user", "1")
    page.press("#user", "Enter")
    page.wait_for_selector("#recs[data-mode='model'] li[data-item]")
    chances = page.locator("#recs .love").all_inner_texts()
    assert len(chances) == 10 and all(re.match(love, t) for t in chances), chances
    shoot(page, "for-you-ordinal")


def test_map_search_click_similar(site, page):
    page.goto(f"{site.base}/map")
    page.wait_for_selector("#map .scatterlayer .point")
    assert page.locator("#map .scatterlayer .trace").first.locator(".point").count() == 50
    box = page.locator("#map .scatterlayer .trace").first.locator(".point").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#tip:not([hidden])")
    assert "ratings" in page.inner_text("#tip")
    page.fill("#q", "Movie 12")
    page.press("#q", "Enter")
    page.get_by_role("button", name="Movie 12 (1992)").click()
    page.wait_for_selector("#d-title:has-text('Movie 12 (1992)')")
    page.wait_for_selector("#similar li button")
    assert page.locator("#similar li").count() == 10
    assert "liked" in page.inner_text("#d-story")
    page.locator("#similar li button").first.click()  # neighbours lead on
    expect(page.locator("#d-title")).not_to_have_text("Movie 12 (1992)")
    shoot(page, "map")
    fits(page, 360)
    shoot(page, "map-360px")


def test_admin_promotes_a_candidate(site, page):
    page.goto(f"{site.base}/admin")
    page.wait_for_selector("#live[data-version='1']")
    page.fill("#admin-key", site.admin)
    page.click("#key-form button[type=submit]")
    page.get_by_role("button", name=f"Promote version {site.candidate}").click()
    page.wait_for_selector(f"#live:has-text('Version {site.candidate} is live')")
    live = [v["id"] for v in httpx.get(f"{site.base}/v1/models").json() if v["status"] == "live"]
    assert live == [site.candidate]
    assert "Kept as a candidate" in page.inner_text("#versions")
    assert int(page.locator("#ingestion dd").first.inner_text().replace(",", "")) > 0
    assert "from 1 to 5" in page.inner_text("#ingestion")  # the store's scale
    expect(page.locator("#jobs")).to_contain_text("No training jobs yet")
    shoot(page, "admin")
    fits(page, 360)
    shoot(page, "admin-360px")


def test_admin_runs_a_canary_and_the_monitor_shows_both_arms(site, page):
    page.goto(f"{site.base}/admin")
    page.fill("#admin-key", site.admin)
    page.click("#key-form button[type=submit]")
    live = next(v["id"] for v in httpx.get(f"{site.base}/v1/models").json() if v["status"] == "live")
    other = next(v["id"] for v in httpx.get(f"{site.base}/v1/models").json() if v["id"] != live)
    page.select_option("#fraction", "0.5")
    page.get_by_role("button", name=f"Start a canary of version {other}").click()
    expect(page.locator("#canary")).to_contain_text(f"Version {other} serves 50% of the users")
    expect(page.locator("#versions")).to_contain_text("canary, 50% of users")
    with httpx.Client(base_url=site.base, timeout=10) as http:
        shown = {http.get(f"/v1/users/{u}/recommendations").json()["model_version"] for u in range(1, 30)}
    assert shown == {live, other}  # each arm serves its users
    page.goto(f"{site.base}/monitor")
    page.wait_for_selector("#arms tbody tr[data-arm='canary']")
    assert page.locator("#arms tbody tr").count() == 2
    expect(page.locator("#canary-text")).to_contain_text(f"Version {other} serves 50%")
    shoot(page, "monitor-canary")
    page.goto(f"{site.base}/admin")
    page.click("#canary-rollback")
    expect(page.locator("#canary")).to_contain_text("was rolled back (by hand)")
    shoot(page, "admin-canary")


def test_api_docs_work_offline(site, page):
    """/docs: Swagger UI from the installed package, nothing from a CDN (the page fixture fails
    on any request outside 127.0.0.1)."""
    page.goto(f"{site.base}/docs")
    page.wait_for_selector(".opblock-summary-path")
    assert page.locator(".opblock").count() >= 20
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # Swagger UI's own page: not ours to label
    page.screenshot(path=str(ARTIFACTS / "docs.png"))


def test_monitor_charts_after_simulated_traffic(site, page):
    rng, stop = random.Random(0), time.monotonic() + 30
    with httpx.Client(base_url=site.base, timeout=10) as http:  # bounded: 200 requests, 30 s
        for k in range(200):
            if time.monotonic() > stop:
                break
            user = str(rng.randint(1, 80))
            if k % 5 == 0:
                item = str(rng.randint(101, 150))
                http.put(f"/v1/users/{user}/ratings/{item}", json={"value": 5.0},
                         headers={"Authorization": f"Bearer {site.writer}"})  # fmt: skip
            assert http.get(f"/v1/users/{user}/recommendations", params={"n": 10}).status_code == 200
    page.goto(f"{site.base}/monitor")
    page.wait_for_selector("#chart-exposure .scatterlayer .trace .point")
    assert page.locator("#chart-exposure .scatterlayer .trace").count() == 3
    assert page.locator("#chart-signal .scatterlayer .trace").count() == 2
    assert page.locator("#chart-versions .barlayer .point").count() > 0
    assert page.locator("#numbers tbody tr").count() == 2
    assert page.locator("#series tbody tr").count() == 24  # the charts' numbers, as a table
    page.fill("#t-gini", "0.05")
    page.fill("#t-key", site.admin)
    page.click("#thresholds button[type=submit]")
    page.wait_for_selector("#alerts:has-text('Gini of exposure')")
    shoot(page, "monitor")
    fits(page, 360)
    shoot(page, "monitor-360px")


def test_error_states_say_what_is_wrong(site, page, errors, tmp_path):
    """No live model yet, an unknown user, a service that does not answer: a message each."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    engine = store.make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    with Running(Settings(db=url, reload_seconds=0)) as empty:
        for path in ("/", "/map"):
            page.goto(empty + path)
            expect(page.locator("#status")).to_contain_text("No model is live yet")
        page.goto(empty + "/admin")
        expect(page.locator("#live")).to_contain_text("No version is live")
        expect(page.locator("#versions")).to_contain_text("No model versions yet")
        page.goto(empty + "/monitor")
        expect(page.locator("#status")).to_contain_text("Nothing has been shown yet")
        shoot(page, "monitor-empty")

    page.goto(f"{site.base}/for-you")
    page.fill("#user", "nobody-at-all")
    page.press("#user", "Enter")
    expect(page.locator("#mode")).to_contain_text("No ratings are stored for user “nobody-at-all”")
    assert len(items_of(page)) == 10

    page.route("**/v1/**", lambda route: route.abort())  # as if the service had stopped
    page.click("#who button[type=submit]")
    expect(page.locator("#status")).to_contain_text("The service does not answer")
    shoot(page, "for-you-service-down")
    unexpected = [e for e in errors if "Failed to load resource" not in e]
    errors.clear()  # the 503s and aborted requests above were the point
    assert not unexpected, unexpected
