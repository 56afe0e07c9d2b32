"""Guarded rollout: the gate refuses a worse candidate and promotes a better one; a promotion under
load fails no request and later responses name the new version."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pandas as pd
import pytest
import uvicorn
from sqlalchemy.orm import Session

from collabkit.serve import Settings, create_app, rollout, store
from tests.conftest import make_ratings
from tests.serve.conftest import free_port, load_store, make_key

SPEC = "dot-bias(n_factors=4, epochs=8, lr_max=2e-2)"


def test_holdout_takes_the_most_recent_ratings(tiny_data):
    frame = tiny_data.frame.assign(written_at=0.0)
    old, recent = rollout.holdout(frame, 0.1)
    assert len(recent) == round(len(frame) * 0.1) and len(old) + len(recent) == len(frame)
    assert old["timestamp"].max() <= recent["timestamp"].min()
    with pytest.raises(ValueError, match="between 0 and 1"):
        rollout.holdout(frame, 1.5)


def test_gate_promotes_better_and_refuses_worse(db_url, tmp_path):
    """Acceptance: a candidate trained on a tenth of the data is refused, a full one promoted.

    Every rating was written before the first version, so the gate retrains the live recipe on
    the same part as the candidate ("same-split"): the full candidate ties it (same recipe, same
    seed), the tenth-trained one is worse than it.
    """
    load_store(db_url, make_ratings(n_users=150, n_items=80, density=0.3, seed=3))
    engine = store.make_engine(db_url)
    weak = rollout.retrain(engine, tmp_path, SPEC, train_fraction=0.1)
    assert (
        weak["promoted"] and weak["live_version"] is None and weak["gate"] == "first"
    )  # nothing live yet: anything beats nothing
    good = rollout.retrain(engine, tmp_path, SPEC, tolerance=0.01)
    assert good["promoted"] and good["gate"] == "same-split" and good["live_refit"]
    assert good["rmse_candidate"] == pytest.approx(good["rmse_live"])
    worse = rollout.retrain(engine, tmp_path, SPEC, tolerance=0.01, train_fraction=0.1)
    assert not worse["promoted"] and worse["rmse_candidate"] > worse["rmse_live"] + 0.01
    with Session(engine) as s:
        status = {v.id: v.status for v in store.versions(s)}
        assert status == {
            weak["version"]: "retired",
            good["version"]: "live",
            worse["version"]: "candidate",
        }
        kept = s.get(store.ModelVersion, worse["version"])
        assert kept.metrics["rmse_candidate"] == pytest.approx(
            worse["rmse_candidate"]
        )  # numbers recorded
    assert rollout.rollback(engine) == weak["version"]  # rollback restores the previous live one
    engine.dispose()


class Running:
    """The app under a real uvicorn server in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.mark.slow
def test_model_swap_under_load(db_url, tiny_data, tiny_model, tmp_path):
    """Acceptance: clients keep requesting while a version is promoted (API) and rolled back (CLI
    path, picked up by polling): zero failed requests; responses after each switch name it."""
    load_store(db_url, tiny_data)
    admin = {"Authorization": f"Bearer {make_key(db_url, 'admin')}"}
    engine = store.make_engine(db_url)
    with Session(engine) as s:
        other = rollout.register(engine, tiny_model)
        new = store.add_version(s, str(tiny_model), "same weights, new version").id
    settings = Settings(db=db_url, reload_seconds=0.2)
    log: list[tuple[float, int, int | None]] = []  # (request start, status, version)
    stop = threading.Event()

    def client(base: str, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=30) as http:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = http.get(f"/v1/users/{rng.randint(1, 90)}/recommendations", params={"n": 5})
                    log.append((t0, r.status_code, r.json().get("model_version")))
                except httpx.HTTPError:
                    log.append((t0, 0, None))

    with Running(settings) as base:
        threads = [threading.Thread(target=client, args=(base, k)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        sending = time.monotonic()  # the swap happens before the answer: requests meanwhile may see either
        r = httpx.post(f"{base}/v1/models/{new}/promote", headers=admin, timeout=60)
        promoted = time.monotonic()
        assert r.status_code == 200 and r.json()["status"] == "live"
        time.sleep(1.0)
        rolling = time.monotonic()  # requests from here on may see either version for a poll or two
        assert rollout.rollback(engine) == other  # as `collabkit models rollback` does
        rolled = time.monotonic()
        time.sleep(2.0)  # the server polls every 0.2 s
        stop.set()
        for t in threads:
            t.join()
    engine.dispose()
    assert len(log) > 20
    assert all(status == 200 for _, status, _ in log), {s for _, s, _ in log}
    after_promote = [v for t0, _, v in log if promoted < t0 < rolling]
    assert after_promote and set(after_promote) == {new}
    assert [v for t0, _, v in log if t0 > rolled + 1.0][-1] == other
    assert {v for t0, _, v in log if t0 < sending - 0.5} == {other}


def frame_of(n: int, written: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"user": [str(k % 7) for k in range(n)], "item": [str(k % 11) for k in range(n)],
                         "rating": 3.0, "timestamp": range(n), "written_at": written})  # fmt: skip


def test_the_plan_scores_on_ratings_neither_model_saw():
    old, new = frame_of(500, written=1.0), frame_of(60, written=3.0)
    both = pd.concat([old, new], ignore_index=True)
    first = rollout.plan(old, None, None, 0.1)
    assert first.how == "first" and len(first.test) == 50
    after = rollout.plan(both, 2.0, None, 0.1)  # 60 ratings written after the live cut-off
    assert after.how == "after-cutoff" and len(after.test) == 60 and (after.train["written_at"] <= 2.0).all()
    same = rollout.plan(old, 2.0, None, 0.1)  # none after it: both recipes on the same part
    assert same.how == "same-split" and same.refit_live and len(same.test) == 50
    no_recipe = rollout.plan(old, 2.0, "the live model's recipe cannot be retrained", 0.1)
    assert no_recipe.how == "undecided" and "0 rating(s) were written after" in no_recipe.reason
    assert "recipe cannot be retrained" in no_recipe.reason
    small = rollout.plan(frame_of(200, 1.0), 2.0, None, 0.1)  # 20 held out: too few to judge
    assert small.how == "undecided" and "leaves 20 to score on" in small.reason


def test_the_gate_says_when_it_cannot_decide(db_url, tiny_data, tmp_path):
    """A ranking model live (RMSE cannot judge it) and no ratings after its cut-off: the
    candidate is kept, not promoted, and the record says why."""
    from collabkit.checkpoint import save_model

    load_store(db_url, tiny_data)
    engine = store.make_engine(db_url)
    ranking = save_model(rollout._train("most-popular", tiny_data), tmp_path / "popular", items=tiny_data.items)
    live = rollout.register(engine, ranking)
    result = rollout.retrain(engine, tmp_path / "models", SPEC)
    assert not result["decided"] and not result["promoted"] and result["gate"] == "undecided"
    assert "ranks items" in result["reason"] and result["rmse_live"] is None
    with Session(engine) as s:
        assert store.live_version(s).id == live
        assert s.get(store.ModelVersion, result["version"]).metrics["reason"] == result["reason"]
    engine.dispose()


def test_a_swap_frees_the_old_engine_and_freezes_the_new_one_out_of_the_collector():
    """After a swap the engine's objects sit in the permanent generation (full collections paused
    workers for 100-200 ms scanning them); the next swap unfreezes first so the old one can go."""
    import gc
    import weakref

    from collabkit.serve.live import settle

    class Held:  # a stand-in for an engine in a reference cycle (only the collector frees it)
        def __init__(self) -> None:
            self.me = self

    old = Held()
    gone = weakref.ref(old)
    settle()
    assert gc.get_freeze_count() > 0
    del old
    settle()  # the next swap
    assert gone() is None, "a frozen engine was never freed"
    gc.unfreeze()
