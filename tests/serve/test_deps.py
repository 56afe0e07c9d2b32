"""A worker trusts a valid key and the store's recorded scale for deps.TRUSTED_FOR: a write costs
no query before its commit, and what changed in the store is seen once that time has passed."""

from __future__ import annotations

from sqlalchemy.orm import Session

from collabkit.serve import deps, store
from collabkit.serve.validation import Scale


def test_a_checked_key_and_the_recorded_scale_cost_one_query_each_per_period(api, monkeypatch):
    queries = {"key": 0, "scale": 0}
    key_role, scale = deps.key_role, store.scale

    def counted(name, fn):
        def call(*args):
            queries[name] += 1
            return fn(*args)

        return call

    monkeypatch.setattr(deps, "key_role", counted("key", key_role))
    monkeypatch.setattr(store, "scale", counted("scale", scale))
    now = [1000.0]
    monkeypatch.setattr(deps.time, "monotonic", lambda: now[0])
    for k in range(5):
        r = api.client.put(f"/v1/users/u1/ratings/i{k}", json={"value": 4}, headers=api.writer)
        assert r.status_code == 200, r.text
    assert queries == {"key": 1, "scale": 1}
    bad = api.client.put("/v1/users/u1/ratings/i1", json={"value": 4}, headers={"Authorization": "Bearer ck_nope_x"})
    assert bad.status_code == 401 and queries["key"] == 2  # a key that failed is asked again every time

    engine = store.make_engine(api.url)
    with Session(engine) as session:
        assert scale(session).high < 7.5
    with Session(engine) as session:  # `collabkit db scale` replaces the scale while serving
        store.record_scale(session, Scale(0, 10, 0.5, source="set by hand"), replace=True)
        session.commit()
    engine.dispose()
    half = api.client.put("/v1/users/u1/ratings/i1", json={"value": 7.5}, headers=api.writer)
    assert half.status_code == 422  # still the old scale in this worker's memory ...
    now[0] += deps.TRUSTED_FOR + 0.01
    half = api.client.put("/v1/users/u1/ratings/i1", json={"value": 7.5}, headers=api.writer)
    assert half.status_code == 200, half.text  # ... and the new one a period later
    assert queries == {"key": 3, "scale": 2}
