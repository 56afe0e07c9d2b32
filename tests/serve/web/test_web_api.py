"""The endpoints the pages need (map, item story, monitor, thresholds, ingestion) and the pages
themselves, through the ASGI app on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from collabkit.checkpoint import load_model, save_model
from collabkit.serve import Settings, create_app, migrate, store
from collabkit.serve.api import item_map, monitor
from collabkit.serve.rollout import _train
from tests.serve.conftest import load_store, make_key


def test_map_points_are_the_most_rated_items_with_details(api, tiny_data):
    r = api.client.get("/v1/map", params={"n": 20, "x": 1, "y": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    pts = body["points"]
    counts = tiny_data.frame["item"].value_counts()
    assert len(pts) == 20 and len(body["explained_variance"]) == 3
    assert [p["n_ratings"] for p in pts] == sorted((p["n_ratings"] for p in pts), reverse=True)
    assert pts[0]["n_ratings"] == counts.max()
    assert all(p["title"] and p["bias"] is not None for p in pts)
    assert set(body["extremes"]) == {"pc1", "pc2"}
    assert api.client.get("/v1/map", params={"x": 2, "y": 2}).status_code == 422


def test_item_story_tells_the_bias_against_its_kind(api, tiny_data):
    r = api.client.get("/v1/items/101/story")
    assert r.status_code == 200, r.text
    s = r.json()
    f = tiny_data.frame
    assert s["title"] == "Movie 0 (1980)" and s["n_ratings"] == (f["item"] == 101).sum()
    assert s["mean_rating"] == pytest.approx(f.loc[f["item"] == 101, "rating"].mean())
    assert s["kind"] is None and s["kind_size"] == 50 and 1 <= s["kind_rank"] <= 50
    assert "liked" in s["story"] and "Movie 0 (1980)" in s["story"]
    assert api.client.get("/v1/items/nope/story").status_code == 404


def test_bias_kind_is_the_first_genre():
    table = pd.DataFrame({
        "item": ["a", "b", "c", "d"], "genres": ["Drama|War", "Drama", "Comedy", None],
        "bias": [0.5, 0.1, 0.9, 0.0],
    })  # fmt: skip
    facts = item_map._bias_facts(table, "b")
    assert facts["kind"] == "Drama" and facts["kind_size"] == 2 and facts["kind_rank"] == 2
    assert "liked less than most Drama films" in item_map._tell("B", 3, 3.5, facts)


def test_monitor_concentration_metrics_count_items_never_shown():
    even = monitor.exposure_metrics(pd.DataFrame({"item": list("abcd"), "n": 5}), 4)
    assert even == pytest.approx({"gini": 0, "coverage": 1, "top1_share": 0.25})
    one = monitor.exposure_metrics(pd.DataFrame({"item": ["a"], "n": [10]}), 4)
    assert one == pytest.approx({"gini": 0.75, "coverage": 0.25, "top1_share": 1})  # (n-1)/n
    shown = pd.DataFrame({"item": ["a", "b", "c"], "n": [60, 30, 10]})  # of 200: top 1% = 2 items
    assert monitor.exposure_metrics(shown, 200)["top1_share"] == pytest.approx(0.9)
    assert monitor.signal_metrics(np.array([90, 5, 5])) == pytest.approx(
        {"users1_share": 0.9, "users5_share": 0.9}  # at least one rater
    )
    assert monitor.signal_metrics(np.array([])) == {"users1_share": None, "users5_share": None}


def test_monitor_over_time_and_per_version_with_alerts(api):
    empty = api.client.get("/v1/monitor").json()
    assert empty["series"] == [] and empty["alerts"] == [] and empty["catalogue"] == 50
    for u in range(1, 31):
        assert api.client.get(f"/v1/users/{u}/recommendations", params={"n": 5}).status_code == 200
    body = api.client.get("/v1/monitor", params={"periods": 4}).json()
    assert len(body["series"]) == 4 and sum(p["exposures"] for p in body["series"]) == 150
    last = [p for p in body["series"] if p["exposures"]][-1]
    assert 0 <= last["gini"] <= 1 and 0 < last["coverage"] <= 1 and 0 < last["users5_share"] <= 1
    (v,) = body["versions"]
    assert v["exposures"] == 150 and v["status"] == "live" and v["ratings"] > 0

    limits = {"gini": 0.0, "coverage": 1.0, "users5_share": None}
    assert api.client.put("/v1/monitor/thresholds", json=limits).status_code == 401
    r = api.client.put("/v1/monitor/thresholds", json=limits, headers=api.writer)
    assert r.status_code == 403
    r = api.client.put("/v1/monitor/thresholds", json=limits, headers=api.admin)
    assert r.status_code == 200 and r.json()["gini"] == 0.0 and r.json()["users5_share"] is None
    alerts = api.client.get("/v1/monitor").json()["alerts"]
    assert {a["metric"] for a in alerts} == {"gini", "coverage"}
    assert api.client.put("/v1/monitor/thresholds", json={"gini": 2}, headers=api.admin).status_code == 422


def test_monitor_reads_only_its_window(api):
    """Exposures older than the window are neither counted nor read (the WHERE on shown_at)."""
    for u in range(1, 6):
        assert api.client.get(f"/v1/users/{u}/recommendations", params={"n": 4}).status_code == 200
    api.client.get("/v1/monitor")  # flushes the log
    old = time.time() - 3 * 86400
    engine = store.make_engine(api.url)
    with Session(engine) as s:
        version = s.scalar(select(store.Exposure.model_version))
        s.add_all(store.Exposure(user_id="9", item_id=str(i), position=1, model_version=version,
                                 shown_at=old + i) for i in range(1, 31))  # fmt: skip
        s.commit()
    engine.dispose()
    recent = api.client.get("/v1/monitor", params={"hours": 24, "periods": 2}).json()
    assert sum(p["exposures"] for p in recent["series"]) == 20 == recent["versions"][0]["exposures"]
    assert recent["series"][0]["start"] >= recent["since"]
    week = api.client.get("/v1/monitor", params={"periods": 2}).json()  # default: the last 7 days
    assert sum(p["exposures"] for p in week["series"]) == 50 == week["versions"][0]["exposures"]
    assert week["series"][0]["start"] < recent["since"]
    assert api.client.get("/v1/monitor", params={"hours": 0}).status_code == 422


@pytest.fixture(scope="module")
def ordinal_model(tiny_data, tmp_path_factory) -> Path:
    """An ordinal model (PROBA) trained on the tiny ratings, saved with its item titles."""
    model = _train("ordinal(n_factors=4, epochs=8, lr_max=2e-2)", tiny_data)
    return save_model(model, tmp_path_factory.mktemp("ordinal"), items=tiny_data.items)


def test_recommendations_tell_the_chance_of_love_where_the_model_gives_one(api, ordinal_model, tiny_data, tmp_path):
    plain = api.client.get("/v1/users/1/recommendations", params={"n": 4}).json()
    assert plain["love_at"] is None and all(i["p_love"] is None for i in plain["items"])

    url = f"sqlite:///{tmp_path / 'ordinal.db'}"
    engine = store.make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    load_store(url, tiny_data)
    writer = {"Authorization": f"Bearer {make_key(url, 'writer')}"}
    settings = Settings(db=url, model=str(ordinal_model), reload_seconds=0, models_dir=str(tmp_path / "m"))
    with TestClient(create_app(settings)) as client:
        known = client.get("/v1/users/1/recommendations", params={"n": 4}).json()
        assert known["mode"] == "model" and known["love_at"] == 4.0
        model = load_model(ordinal_model)
        p = model.predict_proba([1] * 4, [int(i["item"]) for i in known["items"]])  # levels 1..5
        assert [i["p_love"] for i in known["items"]] == pytest.approx(p[:, 3:].sum(1), abs=1e-3)
        answers = [{"item": q["item"], "rating": r} for q, r in zip(
            client.get("/v1/onboarding/questions", params={"n": 3}).json()["questions"], (5, 1, 4))]
        new = client.post("/v1/users", json={"answers": answers, "n": 4}, headers=writer).json()
        assert new["mode"] == "fold-in" and new["love_at"] == 4.0
        assert all(0 < i["p_love"] < 1 for i in new["items"])


def test_ingestion_counts(api, tiny_data):
    c = api.client.get("/v1/monitor/ingestion").json()
    assert c["ratings"] == len(tiny_data.frame) == c["ratings_last_hour"]
    assert c["users"] == 80 and c["items"] == 50 and c["last_rating_at"]


def test_pages_and_plotly_are_served_with_a_strict_policy(api):
    for path in ("/", "/for-you", "/map", "/admin", "/monitor"):
        r = api.client.get(path)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert "default-src 'self'" in r.headers["content-security-policy"]
        assert "http://" not in r.text and "https://" not in r.text  # nothing from elsewhere
    js = api.client.get("/vendor/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000
    assert api.client.get("/static/common.js").status_code == 200
    assert "/" not in {p for p in api.client.get("/openapi.json").json()["paths"]}
