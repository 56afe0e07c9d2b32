"""The canary: arms by user id, the roll-back rule, the endpoints, and a simulated run in which
the rule rolls back a worse candidate served to 20% of the users and promotes a better one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from collabkit.checkpoint import save_model
from collabkit.data.interactions import Ratings
from collabkit.serve import Settings, canary, create_app, migrate, rollout, store
from collabkit.simulate import WorldConfig, build_world
from tests.serve.conftest import make_key
from tests.serve.test_findings import broken_copy


def test_arms_are_deterministic_and_nested():
    users = [f"user-{k}" for k in range(20_000)]
    at = {f: {u for u in users if canary.arm(u, f) == "canary"} for f in (0.05, 0.2, 0.5)}
    assert abs(len(at[0.2]) / len(users) - 0.2) < 0.01
    assert at[0.05] <= at[0.2] <= at[0.5]  # raising the fraction keeps the canary's users
    assert all(canary.arm(u, 0.2) == canary.arm(u, 0.2) for u in users[:100])
    assert canary.arm("anyone", 0.0) == "live"


def figures(version: int, rated: int, mean: float, sd: float = 1.0) -> canary.Figures:
    return canary.Figures(version, rated=rated, shown=rated * 5, mean_rating=mean, sd=sd)


def test_the_rule_waits_for_evidence_then_rolls_back_or_promotes():
    live = figures(1, 400, 4.0)
    assert canary.verdict(live, figures(2, 10, 1.0), 0.1, 50).action == "wait"  # too few rated
    worse = canary.verdict(live, figures(2, 400, 3.5), 0.1, 50)
    assert worse.action == "roll back" and worse.gap == pytest.approx(0.5)
    assert canary.verdict(live, figures(2, 400, 4.2), 0.1, 50).action == "promote"  # better
    steady = figures(1, 400, 4.0, sd=0.5)  # se 0.035: a gap of 0.03 is surely within 0.1
    assert canary.verdict(steady, figures(2, 400, 3.97, sd=0.5), 0.1, 50).action == "promote"
    assert canary.verdict(live, figures(2, 60, 3.85, sd=1.5), 0.1, 50).action == "wait"  # not sure either way


def test_canary_endpoints_route_users_and_can_be_ended_by_hand(api, tiny_data, tiny_model, tmp_path):
    engine = store.make_engine(api.url)
    mean = broken_copy(tiny_model, tmp_path / "broken")
    with Session(engine) as s:
        v1 = store.live_version(s).id
        v2 = store.add_version(s, str(tiny_model), "same weights, another version").id
        bad = store.add_version(s, str(mean), "mean").id
    engine.dispose()
    c = api.client
    assert c.get("/v1/models/canary").json()["canary"] is None
    assert c.post(f"/v1/models/{v2}/canary", json={"fraction": 0.5}, headers=api.writer).status_code == 403
    r = c.post(f"/v1/models/{bad}/canary", json={"fraction": 0.5}, headers=api.admin)
    assert r.status_code == 409 and "does not load" in r.json()["error"]
    assert c.post(f"/v1/models/{v1}/canary", json={}, headers=api.admin).status_code == 409  # live already
    assert c.post("/v1/models/99/canary", json={}, headers=api.admin).status_code == 404
    assert c.post(f"/v1/models/{v2}/canary", json={"fraction": 1.0}, headers=api.admin).status_code == 422
    r = c.post(f"/v1/models/{v2}/canary", json={"fraction": 0.5, "min_rated": 5}, headers=api.admin)
    assert r.status_code == 201 and r.json()["status"] == "running"
    assert c.post(f"/v1/models/{v2}/canary", json={}, headers=api.admin).status_code == 409  # one at a time
    users = [str(u) for u in range(1, 41)]
    for user in users:
        body = c.get(f"/v1/users/{user}/recommendations", params={"n": 3}).json()
        assert body["model_version"] == (v2 if canary.arm(user, 0.5) == "canary" else v1)
    listed = {v["id"]: v for v in c.get("/v1/models").json()}
    assert listed[v2]["canary"] == 0.5 and listed[v1]["canary"] is None
    report = c.get("/v1/models/canary").json()
    arms = report["arms"]
    assert arms["live"]["lists"] + arms["canary"]["lists"] == 40 and arms["canary"]["version"] == v2
    assert report["verdict"]["action"] == "wait"  # nobody has rated what they were shown yet
    r = c.post("/v1/models/canary/rollback", headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "rolled back"
    assert {c.get(f"/v1/users/{u}/recommendations").json()["model_version"] for u in users} == {v1}
    assert c.post("/v1/models/canary/rollback", headers=api.admin).status_code == 409
    c.post(f"/v1/models/{v2}/canary", json={"fraction": 0.2}, headers=api.admin)
    r = c.post("/v1/models/canary/promote", headers=api.admin)  # promote-all by hand
    assert r.status_code == 200 and r.json()["id"] == v2 and r.json()["status"] == "live"
    assert c.get("/v1/models/canary").json()["canary"]["status"] == "promoted"
    assert {c.get(f"/v1/users/{u}/recommendations").json()["model_version"] for u in users} == {v2}


# --- a simulated run ---------------------------------------------------------------------------
N_USERS, N_ITEMS = 250, 120


@pytest.fixture
def world():
    """Users with true tastes (rank 3 plus noise on 1..5), who choose from the lists they are
    shown by position and taste and rate what they chose by their true rating: simulate.World."""
    rng = np.random.default_rng(11)
    U, V = rng.normal(size=(N_USERS, 3)), rng.normal(size=(N_ITEMS, 3))
    tastes = np.clip(3.2 + 0.8 * U @ V.T + rng.normal(0, 0.4, N_ITEMS), 1, 5)
    return build_world(tastes, np.zeros(N_ITEMS, bool), np.ones((N_ITEMS, 1)), (1.0, 5.0),
                       WorldConfig(noise=0.3), seed=11)  # fmt: skip


def first_ratings(world, rng) -> pd.DataFrame:
    u, i = np.nonzero(rng.random((N_USERS, N_ITEMS)) < 0.12)
    world.seen[u, i] = True
    return pd.DataFrame({"user": [f"u{k}" for k in u], "item": [f"i{k}" for k in i],
                         "rating": world.observe(u, i).astype(float), "timestamp": 1.0})  # fmt: skip


def run_canary(world, tmp_path, live_spec: str, canary_spec: str, shuffle: str) -> canary.Verdict:
    """A store holding the first ratings; the live version and a canary serving 20% of the
    users; rounds in which every user asks for 10 items, takes 2 and rates them, until the rule
    acts. ``shuffle`` names the version trained on shuffled ratings (it learned nothing)."""
    rng = np.random.default_rng(5)
    first = first_ratings(world, rng)
    data = Ratings(first, scale=(1.0, 5.0))
    noise = data.with_frame(first.assign(rating=rng.permutation(first["rating"].to_numpy())))
    folders = {}
    for name, spec in (("live", live_spec), ("canary", canary_spec)):
        model = rollout._train(spec, noise if name == shuffle else data)
        folders[name] = save_model(model, tmp_path / name)
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    engine = store.make_engine(url)
    migrate.upgrade(engine)
    with Session(engine) as s:
        store.upsert_ratings(s, first.rename(columns={"rating": "value"}).to_dict("records"))
    rollout.register(engine, folders["live"])
    with Session(engine) as s:
        candidate = store.add_version(s, str(folders["canary"]), canary_spec).id
    writer, admin = {"X-API-Key": make_key(url, "writer")}, {"X-API-Key": make_key(url, "admin")}
    settings = Settings(db=url, reload_seconds=0, canary_seconds=0, exposure_flush_seconds=0.2)
    with TestClient(create_app(settings)) as c:
        r = c.post(f"/v1/models/{candidate}/canary", json={"fraction": 0.2, "tolerance": 0.1, "min_rated": 50},
                   headers=admin)  # fmt: skip
        assert r.status_code == 201, r.text
        users = np.arange(N_USERS)
        for _ in range(8):
            lists = np.full((N_USERS, 10), -1)
            for u in users:
                got = c.get(f"/v1/users/u{u}/recommendations", params={"n": 10}).json()["items"]
                lists[u, : len(got)] = [int(x["item"][1:]) for x in got]
            cu, ci, _ = world.choose(users, lists, np.full(N_USERS, 2), rng)
            rows = [{"user": f"u{a}", "item": f"i{b}", "value": float(v)}
                    for a, b, v in zip(cu, ci, world.observe(cu, ci))]  # fmt: skip
            assert c.post("/v1/ratings", json={"ratings": rows}, headers=writer).status_code == 201
            found = c.app.state.canary.check()
            if found is not None and found.action != "wait":
                break
        report = c.get("/v1/models/canary").json()
        live_now = c.get("/readyz").json()["model_version"]
    engine.dispose()
    assert report["canary"]["status"] != "running", report
    assert live_now == (candidate if report["canary"]["status"] == "promoted" else report["canary"]["live_version"])
    return found


@pytest.mark.slow
def test_a_worse_canary_is_rolled_back_by_the_rule(world, tmp_path):
    """Acceptance: a deliberately worse candidate (trained on shuffled ratings) serves 20% of the
    users; their ratings of what they were shown are lower, and the rule rolls it back."""
    spec = "dot-bias(n_factors=3, epochs=20, lr_max=3e-2, wd=0.05)"
    found = run_canary(world, tmp_path, spec, spec, shuffle="canary")
    assert found.action == "roll back" and found.gap > 0.1, found


@pytest.mark.slow
def test_a_better_canary_is_promoted_by_the_rule(world, tmp_path):
    """Acceptance: the live version learned nothing (shuffled ratings), the candidate did: the
    rule promotes the candidate to everyone."""
    spec = "dot-bias(n_factors=3, epochs=20, lr_max=3e-2, wd=0.05)"
    found = run_canary(world, tmp_path, spec, spec, shuffle="live")
    assert found.action == "promote" and found.gap < 0, found
