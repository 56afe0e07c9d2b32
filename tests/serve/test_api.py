"""The /v1 API on a real SQLite file and a real PostgreSQL database, through the ASGI app."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from collabkit.serve import Settings, create_app, store


def recs(api, user, n=10):
    r = api.client.get(f"/v1/users/{user}/recommendations", params={"n": n})
    assert r.status_code == 200, r.text
    return r.json()


def test_known_user_gets_model_list_without_seen_items(api, tiny_data):
    body = recs(api, "1", n=10)
    assert body["mode"] == "model" and body["fallback"] is None and body["model_version"] >= 1
    seen = set(tiny_data.frame.loc[tiny_data.frame["user"] == 1, "item"].astype(str))
    got = [r["item"] for r in body["items"]]
    assert len(got) == 10 and not seen & set(got)
    assert [r["rank"] for r in body["items"]] == list(range(1, 11))
    assert all(r["because"] and r["title"] for r in body["items"])


def test_unknown_user_gets_the_average_taste_list(api):
    body = recs(api, "stranger")
    assert body["mode"] == "average-taste" and body["fallback"] == "average-taste"
    assert len(body["items"]) == 10 and "average-taste" in body["items"][0]["because"]


def test_new_user_posting_ten_ratings_is_personalised_at_once(api, tiny_data):
    """Acceptance: 10 ratings, next request personalised (fold-in), unlike the average-taste list."""
    fallback = [r["item"] for r in recs(api, "newbie")["items"]]
    items = sorted(tiny_data.frame["item"].unique())[:20:2]
    ratings = [
        {"user": "newbie", "item": str(i), "value": 5.0 if k % 2 else 1.0}
        for k, i in enumerate(items)
    ]
    r = api.client.post("/v1/ratings", json={"ratings": ratings}, headers=api.writer)
    assert r.status_code == 201 and r.json() == {"written": 10}
    body = recs(api, "newbie")
    assert body["mode"] == "fold-in" and body["fallback"] is None
    got = [x["item"] for x in body["items"]]
    assert got != fallback
    assert not {str(i) for i in items} & set(got)  # what they rated is never recommended back


def test_known_user_rating_after_training_is_folded_in(api):
    item = recs(api, "1")["items"][0]["item"]
    r = api.client.put(f"/v1/users/1/ratings/{item}", json={"value": 1.0}, headers=api.writer)
    assert r.status_code == 200 and r.json() == {"written": 1}
    body = recs(api, "1")
    assert body["mode"] == "fold-in" and item not in [x["item"] for x in body["items"]]


def test_an_unchanged_known_user_costs_one_stamp_read_and_any_change_is_seen(api, monkeypatch):
    """A known user whose ratings are as the model's list captured them is answered from their
    stamp alone; a change, even SQL written behind the service's back, restamps them (the store's
    trigger) and the next request reads their ratings."""
    reads: list[str] = []
    real = store.user_ratings
    monkeypatch.setattr(store, "user_ratings", lambda db, user: reads.append(user) or real(db, user))
    first = recs(api, "1")
    assert first["mode"] == "model" and reads == []
    top = first["items"][0]["item"]
    engine = store.make_engine(api.url)
    with engine.begin() as conn:  # rated before the training: still the model's list, without it
        conn.execute(text("INSERT INTO ratings (user_id, item_id, value, timestamp, written_at) "
                          "SELECT '1', :item, 5.0, min(written_at), min(written_at) FROM ratings"), {"item": top})  # fmt: skip
    engine.dispose()
    again = recs(api, "1")
    assert reads == ["1"] and again["mode"] == "model" and top not in [x["item"] for x in again["items"]]
    assert recs(api, "2")["mode"] == "model" and reads == ["1"]  # another user's stamp did not move


def test_writes_need_a_writer_key_and_admin_needs_admin(api):
    one = {"value": 3.0}
    assert api.client.put("/v1/users/u/ratings/101", json=one).status_code == 401
    r = api.client.put(
        "/v1/users/u/ratings/101", json=one, headers={"Authorization": "Bearer ck_0_wrong"}
    )
    assert r.status_code == 401 and "invalid" in r.json()["error"]
    assert api.client.put("/v1/users/u/ratings/101", json=one, headers=api.admin).status_code == 200
    r = api.client.post("/v1/models/rollback", headers=api.writer)
    assert r.status_code == 403 and "admin" in r.json()["error"]
    assert api.client.delete("/v1/users/u/ratings/101").status_code == 401
    assert api.client.delete("/v1/users/u/ratings/101", headers=api.writer).json() == {"deleted": 1}
    assert api.client.delete("/v1/users/u/ratings/101", headers=api.writer).status_code == 404


def test_bad_requests_are_4xx_json_naming_the_field(api):
    post = lambda body, **kw: api.client.post("/v1/ratings", json=body, headers=api.writer, **kw)
    r = post({"ratings": [{"user": "u", "item": "i", "value": "five"}]})
    assert r.status_code == 422 and "value" in r.json()["field"]
    assert r.json()["field"] == "body.ratings.0.value"
    r = post({"ratings": [{"user": "x" * 65, "item": "i", "value": 1}]})
    assert r.status_code == 422 and r.json()["field"] == "body.ratings.0.user"
    r = post({"ratings": [{"user": "a\x00b", "item": "i", "value": 1}]})
    assert r.status_code == 422
    r = post({"ratings": [{"user": "u", "item": "i", "value": 1, "admin": True}]})
    assert r.status_code == 422  # unknown fields are refused, not ignored
    nan = b'{"ratings": [{"user": "u", "item": "i", "value": NaN}]}'
    r = api.client.post(
        "/v1/ratings", content=nan, headers={**api.writer, "content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["field"] == "body.ratings.0.value"
    r = api.client.put("/v1/users/u/ratings/" + "i" * 65, json={"value": 1}, headers=api.writer)
    assert r.status_code == 422 and r.json()["field"] == "path.item"
    r = post({"ratings": []})
    assert r.status_code == 422
    r = api.client.post(
        "/v1/ratings",
        content=b"{not json",
        headers={**api.writer, "content-type": "application/json"},
    )
    assert r.status_code == 422 and "error" in r.json()
    r = api.client.get("/v1/users/1/recommendations", params={"n": 0})
    assert r.status_code == 422 and r.json()["field"] == "query.n"
    r = api.client.get("/v1/items/nope/similar")
    assert r.status_code == 404 and r.json()["field"] == "item"


def test_batch_and_body_sizes_are_bounded(db_url, tiny_model):
    from tests.serve.conftest import make_key

    key = {"X-API-Key": make_key(db_url, "writer")}
    settings = Settings(
        db=db_url, model=str(tiny_model), max_batch=5, max_body_bytes=2000, reload_seconds=0
    )
    with TestClient(create_app(settings)) as client:
        rows = [{"user": "u", "item": str(100 + k), "value": 3.0} for k in range(6)]
        r = client.post("/v1/ratings", json={"ratings": rows}, headers=key)
        assert r.status_code == 422 and r.json()["field"] == "ratings"
        big = [{"user": "u" * 60, "item": str(k), "value": 3.0} for k in range(40)]
        r = client.post("/v1/ratings", json={"ratings": big}, headers=key)
        assert r.status_code == 413 and "error" in r.json()

        def chunks():  # no content-length: the body is counted as it arrives
            yield b'{"ratings": ['
            for _ in range(100):
                yield b'{"user": "u", "item": "1", "value": 3.0},'

        r = client.post(
            "/v1/ratings", content=chunks(), headers={**key, "content-type": "application/json"}
        )
        assert r.status_code == 413


def test_a_crash_inside_is_a_bare_500(db_url, tiny_model, monkeypatch):
    settings = Settings(db=db_url, model=str(tiny_model), reload_seconds=0)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:

        def boom(*a, **k):
            raise RuntimeError("secret internals")

        monkeypatch.setattr(store, "search_items", boom)
        r = client.get("/v1/items", params={"q": "movie"})
        assert r.status_code == 500 and r.json() == {"error": "internal error"}
        assert "secret" not in r.text and "Traceback" not in r.text


def test_similar_search_and_onboarding(api):
    r = api.client.get("/v1/items/101/similar", params={"k": 3})
    assert r.status_code == 200
    sims = r.json()["similar"]
    assert len(sims) == 3 and all(s["item"] != "101" and s["title"] for s in sims)
    r = api.client.get("/v1/items", params={"q": "movie 1", "limit": 5})
    assert r.status_code == 200 and 0 < len(r.json()) <= 5
    assert all("movie 1" in i["title"].lower() for i in r.json())
    q = api.client.get("/v1/onboarding/questions", params={"n": 5}).json()["questions"]
    assert len(q) == 5 and len({x["item"] for x in q}) == 5
    answers = [{"item": x["item"], "rating": 5.0} for x in q]
    r = api.client.post(
        "/v1/users", json={"user": "onboarded", "answers": answers, "n": 5}, headers=api.writer
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["mode"] == "fold-in" and len(body["items"]) == 5
    assert not {a["item"] for a in answers} & {x["item"] for x in body["items"]}
    assert recs(api, "onboarded")["mode"] == "fold-in"  # the answers were stored as ratings
    again = api.client.post("/v1/users", json={"user": "onboarded"}, headers=api.writer)
    assert again.status_code == 409 and again.json()["field"] == "user"
    r = api.client.post(
        "/v1/users", json={"answers": [{"item": "nope", "rating": 3}]}, headers=api.writer
    )
    assert r.status_code == 422 and r.json()["field"] == "answers.0.item"


def test_model_folders_on_the_server_are_shown_to_admin_keys_only(api):
    engine = store.make_engine(api.url)
    with Session(engine) as s:
        job = store.RetrainJob(spec="dot-bias", status="done", result={"path": "/srv/models/v2", "rmse": 0.9})
        s.add(job)
        s.commit()
        job = job.id
    engine.dispose()
    for headers in ({}, api.writer, {"X-API-Key": "ck_not_a_key"}):
        [live] = api.client.get("/v1/models", headers=headers).json()
        assert live["path"] is None and live["name"] == "model", live
        for found in (api.client.get(f"/v1/models/retrain/{job}", headers=headers).json(),
                      api.client.get("/v1/models/retrain", headers=headers).json()[0]):  # fmt: skip
            assert found["result"] == {"path": None, "rmse": 0.9}, found
    [live] = api.client.get("/v1/models", headers=api.admin).json()
    assert Path(live["path"]).name == "model" and (Path(live["path"]) / "config.json").is_file(), live
    assert api.client.get(f"/v1/models/retrain/{job}", headers=api.admin).json()["result"]["path"] == "/srv/models/v2"


def test_models_list_promote_rollback(api, tiny_model):
    from collabkit.serve.rollout import register

    first = api.client.get("/v1/models").json()
    assert [v["status"] for v in first] == ["live"]
    engine = store.make_engine(api.url)
    with Session(engine) as s:
        second = store.add_version(s, str(tiny_model), "copy").id
    engine.dispose()
    r = api.client.post(f"/v1/models/{second}/promote", headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "live"
    assert recs(api, "1")["model_version"] == second
    r = api.client.post("/v1/models/rollback", headers=api.admin)
    assert r.status_code == 200 and r.json()["id"] == first[0]["id"]
    assert recs(api, "1")["model_version"] == first[0]["id"]
    statuses = {v["id"]: v["status"] for v in api.client.get("/v1/models").json()}
    assert statuses == {first[0]["id"]: "live", second: "rolled back"}
    again = api.client.post("/v1/models/rollback", headers=api.admin)  # not back to what it left
    assert again.status_code == 409 and recs(api, "1")["model_version"] == first[0]["id"], again.text
    assert api.client.post("/v1/models/999/promote", headers=api.admin).status_code == 404
    assert register  # the CLI path is covered in test_cli_serve


def wait_for_job(api, job: int, seconds: float = 180) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = api.client.get(f"/v1/models/retrain/{job}").json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"job {job} still {body['status']} after {seconds} s")


def test_retrain_endpoint_runs_a_gated_job_in_its_own_process(api):
    spec = {"spec": "dot-bias(n_factors=4, epochs=8, lr_max=2e-2)", "tolerance": 0.5}
    assert api.client.post("/v1/models/retrain", json=spec, headers=api.writer).status_code == 403
    r = api.client.post("/v1/models/retrain", json=spec, headers=api.admin)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running") and job["estimate_mb"] < job["limit_mb"]
    pid = api.client.app.state.jobs.proc.pid
    assert pid != os.getpid()  # trained in a child process, not in the server's
    done = wait_for_job(api, job["id"])
    assert done["status"] == "done" and done["reason"] == "", done
    versions = api.client.get("/v1/models").json()
    new = versions[-1]
    assert done["version"] == new["id"] and new["spec"] == spec["spec"]
    assert new["metrics"]["gate"] == "same-split" and new["metrics"]["rmse_live"] is not None
    assert new["status"] == ("live" if new["metrics"]["promoted"] else "candidate")
    if new["metrics"]["promoted"]:  # the server loads what the job promoted once the child ends
        deadline = time.monotonic() + 60
        while recs(api, "1")["model_version"] != new["id"]:
            assert time.monotonic() < deadline, "the promoted version was never served"
            time.sleep(0.2)
    listed = api.client.get("/v1/models/retrain").json()
    assert [j["id"] for j in listed] == [job["id"]]
    r = api.client.post("/v1/models/retrain", json={"spec": "x; import os"}, headers=api.admin)
    assert r.status_code == 422 and r.json()["field"] == "body.spec"
    assert api.client.get("/v1/models/retrain/99").status_code == 404


def test_health_ready_metrics(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model_version"] >= 1
    api.client.put("/v1/users/m/ratings/101", json={"value": 2}, headers=api.writer)
    recs(api, "1")
    text = api.client.get("/metrics").text
    assert (
        "collabkit_request_seconds_bucket" in text
        and 'route="/v1/users/{user}/recommendations"' in text
    )
    assert "collabkit_ratings_ingested_total 1.0" in text
    assert "collabkit_model_version 1.0" in text


def test_reads_can_require_a_key(db_url, tiny_model):
    from tests.serve.conftest import make_key

    key = make_key(db_url, "writer")
    settings = Settings(db=db_url, model=str(tiny_model), reload_seconds=0, read_key=True)
    with TestClient(create_app(settings)) as client:
        assert client.get("/v1/users/1/recommendations").status_code == 401
        assert client.get("/v1/models", headers={"X-API-Key": "ck_x_y"}).status_code == 401
        assert (
            client.get("/v1/users/1/recommendations", headers={"X-API-Key": key}).status_code == 200
        )
        assert (
            client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        )
        assert client.get("/healthz").status_code == 200  # health stays open


def test_not_ready_without_a_model(db_url):
    with TestClient(create_app(Settings(db=db_url, reload_seconds=0))) as client:
        assert client.get("/readyz").status_code == 503
        r = client.get("/v1/users/1/recommendations")
        assert r.status_code == 503 and "error" in r.json()


def test_exposures_are_logged_and_the_loss_bound_holds(db_url, tiny_data, tiny_model):
    """Pending exposures never exceed the buffer: at any moment the store lacks at most that many."""
    from tests.serve.conftest import load_store

    load_store(db_url, tiny_data)
    bound = 25
    settings = Settings(db=db_url, model=str(tiny_model), reload_seconds=0, exposure_buffer=bound,
                        exposure_flush_seconds=3600)  # fmt: skip
    engine = store.make_engine(db_url)

    def count() -> int:
        with Session(engine) as s:
            return s.scalar(select(func.count()).select_from(store.Exposure))

    with TestClient(create_app(settings)) as client:
        shown = 0
        for user in range(1, 15):
            body = client.get(f"/v1/users/{user}/recommendations", params={"n": 4}).json()
            shown += len(body["items"])
            stored = count()
            assert shown - stored <= bound  # what a crash right now would lose
            assert len(client.app.state.exposures.pending) < bound
        assert stored > 0
    assert count() == shown  # a clean shutdown flushes the rest
    with Session(engine) as s:
        row = s.scalars(select(store.Exposure).limit(1)).one()
        assert row.position >= 1 and row.model_version == 1
    engine.dispose()


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("COLLABKIT_DB", "sqlite:///elsewhere.db")
    monkeypatch.setenv("COLLABKIT_MAX_BATCH", "3")
    monkeypatch.setenv("COLLABKIT_READ_KEY", "true")
    s = Settings()
    assert (s.db, s.max_batch, s.read_key) == ("sqlite:///elsewhere.db", 3, True)


def test_a_request_hands_its_exposures_to_the_writer_thread(db_url, tiny_data, tiny_model, monkeypatch):
    """Half a buffer pending wakes the thread, which writes them: the request itself does not
    insert and commit on the event loop, unless the thread has fallen a whole buffer behind."""
    from tests.serve.conftest import load_store

    load_store(db_url, tiny_data)
    settings = Settings(db=db_url, model=str(tiny_model), reload_seconds=0, exposure_buffer=8,
                        exposure_flush_seconds=3600)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        log = client.app.state.exposures
        writers: list[str] = []
        write = log._write
        monkeypatch.setattr(log, "_write", lambda batch: (writers.append(threading.current_thread().name), write(batch)))
        assert client.get("/v1/users/1/recommendations", params={"n": 4}).status_code == 200
        deadline = time.monotonic() + 10
        while log.written < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log.written == 4 and writers == ["exposure-log"]


def test_a_live_model_without_factors_answers_similar_with_409_and_keeps_its_reasons(api, tiny_data, tmp_path):
    """The live model's kind, not the request, is why there are no similar items: 409 as /v1/map."""
    from collabkit.checkpoint import save_model
    from collabkit.serve.rollout import _train

    folder = save_model(_train("baseline", tiny_data), tmp_path / "baseline")
    engine = store.make_engine(api.url)
    with Session(engine) as s:
        version = store.add_version(s, str(folder), "baseline").id
    engine.dispose()
    assert api.client.post(f"/v1/models/{version}/promote", headers=api.admin).status_code == 200
    item = str(tiny_data.frame["item"].iloc[0])
    r = api.client.get(f"/v1/items/{item}/similar")
    assert r.status_code == 409 and "no similar items" in r.json()["error"], r.text
    assert api.client.get("/v1/map").status_code == 409
    assert all(x["because"].startswith("rated ") for x in recs(api, "1")["items"])
