"""The engine cache: built once per model, mapped by every engine after, rebuilt when it is not
whole or not this model's, and answering what a freshly built engine answers (same lists, modes
and reasons; scores to float32 precision)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from collabkit.checkpoint import save_model
from collabkit.serve import engine as engine_module
from collabkit.serve.engine import Engine
from collabkit.serve.engine_cache import META, cache_folder
from collabkit.serve.rollout import _train
from tests.conftest import make_ratings

DATA = make_ratings(n_users=40, n_items=30, density=0.4)
SPECS = ["dot-bias(n_factors=4, epochs=4, lr_max=2e-2)", "ordinal(n_factors=3, epochs=4, lr_max=1e-2)"]  # P(love) too


def store_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Ratings as the store hands them to the engine: text ids."""
    return frame.astype({"user": str, "item": str})[["user", "item", "rating"]].reset_index(drop=True)


RATINGS = store_frame(DATA.frame)


@pytest.fixture(scope="module", params=SPECS)
def folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved model of the tiny ratings, of each kind in SPECS."""
    return save_model(_train(request.param, DATA), tmp_path_factory.mktemp("saved") / "model", items=DATA.items)


@pytest.fixture(scope="module")
def dot_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved model of the first kind only: for what does not depend on the kind."""
    return save_model(_train(SPECS[0], DATA), tmp_path_factory.mktemp("saved") / "model", items=DATA.items)


@pytest.fixture
def model_dir(folder: Path, tmp_path: Path) -> Path:
    """The saved model copied afresh for the test: no cache beside it yet."""
    return Path(shutil.copytree(folder, tmp_path / "model"))


@pytest.fixture
def dot_dir(dot_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(dot_folder, tmp_path / "model"))


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The cache folders whose engine computed its lists instead of mapping them (engines built
    without a cache, as ``fresh`` builds them, are not counted)."""
    calls: list[Path] = []
    shared = engine_module.shared_arrays

    def counted(folder: Path | None, key: dict, build: Callable[[], dict]) -> dict:
        return shared(folder, key, lambda: (calls.append(folder), build())[1] if folder else build())

    monkeypatch.setattr(engine_module, "shared_arrays", counted)
    return calls


def load(folder: Path, ratings: pd.DataFrame = RATINGS) -> Engine:
    return Engine.load(1, str(folder), 1e12, ratings)


def fresh(folder: Path, ratings: pd.DataFrame) -> Engine:
    """The same version built without any cache."""
    from collabkit.checkpoint import load_items, load_model

    return Engine(1, str(folder), 1e12, load_model(folder), load_items(folder), ratings)


def entry(folder: Path) -> Path:
    (found,) = [p for p in cache_folder(folder).iterdir() if p.is_dir()]
    return found


def mapped_file(address: int) -> str:
    """The file mapped at ``address`` in this process ("" for anonymous memory)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)  # address range, perms, offset, device, inode, path?
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if lo <= address < hi:
            return fields[5].strip() if len(fields) > 5 else ""
    return ""


def same_answers(a: Engine, b: Engine, ratings: pd.DataFrame) -> None:
    """Both engines answer alike: every user of the ratings, a newcomer and someone with nothing.
    Scores to float32 precision: a user whose ratings changed since one engine was built is scored
    alone by it, and in the batch of every known user by the other (``check_engine``'s tolerance)."""
    asks = [(u, rows["item"].tolist(), rows["rating"].to_numpy(np.float64)) for u, rows in ratings.groupby("user")]
    asks += [("newcomer", ["101", "102", "105"], np.array([5.0, 1.0, 4.0])), ("nobody", [], np.zeros(0))]
    for user, items, values in asks:
        x, y = (e.for_user(user, items, values, np.zeros(len(items)), 10) for e in (a, b))
        assert x.mode == y.mode, user
        np.testing.assert_array_equal(x.items, y.items)
        np.testing.assert_allclose(x.scores, y.scores, rtol=2e-6, atol=2e-6)
        assert x.because.tolist() == y.because.tolist()
        assert (x.p_love is None) == (y.p_love is None)
        if x.p_love is not None:
            np.testing.assert_allclose(x.p_love, y.p_love, rtol=1e-5, atol=1e-6)


def test_built_once_then_mapped(model_dir, builds):
    first = load(model_dir)
    second = load(model_dir)
    assert len(builds) == 1  # the second engine mapped the first one's arrays
    for engine in (first, second):  # both serve from the cache's files, mapped read-only
        assert not engine.top_items.flags.writeable and not engine.seen[1].flags.writeable
        assert mapped_file(engine.top_items.ctypes.data).endswith("/top_items.npy")
        assert mapped_file(engine.unit.data_ptr()).endswith("/unit.npy")
    same_answers(second, fresh(model_dir, RATINGS), RATINGS)


def test_a_cache_built_before_new_ratings_answers_as_a_fresh_build(model_dir, builds):
    load(model_dir)  # the cache, built on the ratings as they were
    rated, deleted = RATINGS["user"].unique()[:2]
    unrated = min(set(RATINGS["item"]) - set(RATINGS[RATINGS["user"] == rated]["item"]))
    later = pd.concat([
        RATINGS[RATINGS["user"] != deleted],
        RATINGS[RATINGS["user"] == deleted].iloc[1:],  # deleted a rating since
        pd.DataFrame({"user": [rated, "newcomer", "newcomer"], "item": [unrated, "101", "110"], "rating": [5.0, 4.0, 2.0]}),
    ]).reset_index(drop=True)  # fmt: skip
    cached = load(model_dir, later)
    assert len(builds) == 1  # new ratings do not make the lists stale: ``seen`` says whom to rescore
    same_answers(cached, fresh(model_dir, later), later)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "meta", "missing"])
def test_a_damaged_cache_is_rebuilt(dot_dir, builds, damage):
    load(dot_dir)
    found = entry(dot_dir)
    path = found / "top_scores.npy"
    if damage == "flip":  # one byte of the data, the header intact: only the checksum sees it
        data = bytearray(path.read_bytes())
        data[-3] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:-40])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "meta":
        (found / META).write_text("{not json")
    else:
        (found / "top_items.npy").unlink()
    rebuilt = load(dot_dir)
    assert len(builds) == 2
    load(dot_dir)
    assert len(builds) == 2  # the rebuilt entry is whole
    same_answers(rebuilt, fresh(dot_dir, RATINGS), RATINGS)


def test_a_cache_made_for_other_model_files_is_not_used(model_dir, builds, tmp_path):
    load(model_dir)
    old = entry(model_dir)
    stale = Path(shutil.copytree(old, tmp_path / "stale"))
    save_model(_train("dot-bias(n_factors=4, epochs=2, lr_max=1e-2)", DATA), model_dir, items=DATA.items)  # other weights, same folder
    new = load(model_dir)
    assert len(builds) == 2
    same_answers(new, fresh(model_dir, RATINGS), RATINGS)
    assert not old.exists()  # the other files' entry is deleted
    # the old entry under the new entry's name: its meta names the other model, so it is rebuilt
    current = entry(model_dir)
    key = json.loads((current / META).read_text())["key"]
    shutil.rmtree(current)
    stale.rename(current)
    again = load(model_dir)
    assert len(builds) == 3
    assert json.loads((entry(model_dir) / META).read_text())["key"] == key
    same_answers(again, fresh(model_dir, RATINGS), RATINGS)


def test_concurrent_loads_build_once(dot_dir, builds, monkeypatch):
    precompute = Engine._precompute  # slowed, so that the other load arrives mid-build

    def slow(self: Engine, ratings: pd.DataFrame, stamps: dict | None) -> dict:
        time.sleep(0.5)
        return precompute(self, ratings, stamps)

    monkeypatch.setattr(Engine, "_precompute", slow)
    engines: list[Engine] = []
    threads = [threading.Thread(target=lambda: engines.append(load(dot_dir))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(engines) == 2 and len(builds) == 1  # one built under the lock; the other waited, then mapped
    same_answers(*engines, RATINGS)


def test_an_unwritable_cache_folder_still_serves(dot_dir, builds):
    cache_folder(dot_dir).write_text("a file where the cache folder would go")
    served = load(dot_dir)
    assert len(builds) == 1
    same_answers(served, fresh(dot_dir, RATINGS), RATINGS)


def test_engines_built_in_memory_write_no_cache(dot_dir, builds):
    fresh(dot_dir, RATINGS)
    assert not cache_folder(dot_dir).exists()
