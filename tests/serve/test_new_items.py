"""New items and updates in the service: an item rated since the live version was trained is
recommended once it has k ratings (marked as such), and an incremental retrain is gated like
any candidate."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from sqlalchemy.orm import Session

from collabkit.checkpoint import save_model
from collabkit.serve import jobs, rollout, store
from collabkit.train.build import build_model
from tests.conftest import make_ratings
from tests.serve.conftest import load_store

SPEC = "dot-bias(n_factors=4, epochs=8, lr_max=2e-2)"


def rate(api, user: str, item: str, value: float) -> None:
    r = api.client.post("/v1/ratings", json={"ratings": [{"user": user, "item": item, "value": value}]}, headers=api.writer)
    assert r.status_code == 201, r.text


def listed(api, user: str) -> dict:
    r = api.client.get(f"/v1/users/{user}/recommendations", params={"n": 100})
    assert r.status_code == 200, r.text
    return {x["item"]: x for x in r.json()["items"]}


def test_an_item_rated_since_training_is_recommended_once_it_has_k_ratings(api, caplog):
    """k = 10 (the default): nine ratings by known users leave it out; the tenth brings it in,
    after the background refresh (called here), marked new_item. The model's item ids are
    integers: an item called "brand-new" cannot join them, and the log says so."""
    live = api.client.app.state.live
    for user in range(1, 10):
        rate(api, str(user), "777", 5.0)
        rate(api, str(user), "brand-new", 5.0)
    assert not live.refresh_items() and "777" not in live.current.item_index
    rate(api, "10", "777", 5.0)
    rate(api, "10", "brand-new", 5.0)
    assert live.refresh_items() and not live.refresh_items()  # once: nothing new the second time
    mine = listed(api, "20")
    assert mine["777"]["new_item"] and not any(x["new_item"] for i, x in mine.items() if i != "777")
    assert "777" not in listed(api, "5")  # rated it: never recommended back
    r = api.client.get("/v1/items/777/similar", params={"k": 3})
    assert r.status_code == 200 and len(r.json()["similar"]) == 3
    assert "brand-new" not in live.current.item_index and "cannot join" in caplog.text


def test_an_incremental_retrain_updates_the_live_model_and_is_gated(db_url, tmp_path):
    data = make_ratings(n_users=150, n_items=80, density=0.3, seed=3)
    f = data.frame.sort_values("timestamp")
    first, later = data.with_frame(f.iloc[: len(f) * 3 // 4]), data.with_frame(f.iloc[len(f) * 3 // 4 :])
    load_store(db_url, first)
    engine = store.make_engine(db_url)
    with pytest.raises(ValueError, match="no version is live"):
        rollout.retrain(engine, tmp_path, incremental=True)
    v1 = rollout.retrain(engine, tmp_path, SPEC)
    time.sleep(0.05)  # the later ratings are written after v1's cut-off
    newcomer = later.frame.assign(user=later.frame["user"] + 1000).head(30)  # users v1 never saw
    load_store(db_url, later.with_frame(pd.concat([later.frame.iloc[30:], newcomer])))
    got = rollout.retrain(engine, tmp_path, incremental=True)
    assert got["gate"] == "incremental" and got["decided"] and got["incremental"]
    assert got["rmse_candidate"] is not None and got["rmse_live"] is not None and got["n_test"] >= rollout.MIN_TEST
    assert got["promoted"] == (got["rmse_candidate"] <= got["rmse_live"] + 0.01)
    with Session(engine) as s:
        version = s.get(store.ModelVersion, got["version"])
        assert version.spec == f"update of version {v1['version']}"
    model = rollout.load_served(engine, version).model
    assert model.meta["lineage"][-1]["parent"]["store_version"] == v1["version"]
    assert any(u in model.users for u in newcomer["user"])  # newcomers of the update
    engine.dispose()


def test_an_incremental_retrain_of_a_kind_that_cannot_update_is_refused_up_front(db_url, tmp_path):
    data = make_ratings(n_users=40, n_items=30, density=0.3)
    load_store(db_url, data)
    engine = store.make_engine(db_url)
    rollout.register(engine, save_model(build_model("baseline", data)[0], tmp_path / "baseline"))
    with pytest.raises(ValueError, match=r"the live model \(baseline\) cannot be updated; kinds that can: .*dot-bias"):
        jobs.check_incremental(engine)
    engine.dispose()
