"""Model folders are whole: written as a unit, checked at load, never mixed with another model or folder."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from collabkit import checkpoint
from collabkit.checkpoint import load_items, load_model, read_config, save_model
from collabkit.models.dot import DotProductBias
from tests.conftest import make_ratings
from tests.crash import kill_at_every_step, kill_at_random_times


def _model(n_users: int = 60, n_items: int = 40, seed: int = 0) -> DotProductBias:
    return DotProductBias.from_data(
        make_ratings(n_users, n_items, seed=seed), n_factors=4, seed=seed
    )


def test_round_trip_keeps_scores_extra_and_items(tmp_path, tiny):
    model = DotProductBias.from_data(tiny, n_factors=4)
    save_model(model, tmp_path / "m", items=tiny.items, extra={"train": {"seed": 7}})
    back = load_model(tmp_path / "m")
    users, items = tiny.frame["user"][:20], tiny.frame["item"][:20]
    np.testing.assert_allclose(back.predict(users, items), model.predict(users, items), rtol=1e-6)
    assert read_config(tmp_path / "m")["train"] == {"seed": 7}
    assert load_items(tmp_path / "m")["title"].iloc[0] == tiny.items["title"].iloc[0]


def test_overwrite_leaves_no_stale_items_and_no_temporaries(tmp_path, tiny):
    save_model(DotProductBias.from_data(tiny, n_factors=4), tmp_path / "m", items=tiny.items)
    save_model(_model(30, 20, seed=1), tmp_path / "m")  # no items this time
    assert load_items(tmp_path / "m") is None
    assert len(load_model(tmp_path / "m").users) == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_folder_that_is_not_a_model_is_never_overwritten(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "config.json").write_text('{"learning_rate": 1}')
    (theirs / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not written by collabkit"):
        save_model(_model(), theirs)
    assert (theirs / "config.json").read_text() == '{"learning_rate": 1}'
    assert (theirs / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="is not a folder"):
        save_model(_model(), theirs / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    save_model(_model(), empty)  # an empty folder is fine
    assert len(load_model(empty).users) == 60


def test_weights_of_another_model_are_refused(tmp_path):
    save_model(_model(60, 40), tmp_path / "a")
    save_model(_model(60, 40, seed=3), tmp_path / "b")  # same shapes, different numbers
    shutil.copy(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors.*(manifest|belong)"):
        load_model(tmp_path / "a")


def test_truncated_weights_are_refused(tmp_path):
    save_model(_model(), tmp_path / "a")
    weights = tmp_path / "a" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_model(tmp_path / "a")


def _edit_config(folder: Path, edit) -> None:
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    edit(cfg)
    path.write_text(json.dumps(cfg))


def test_unknown_format_version_is_refused(tmp_path):
    save_model(_model(), tmp_path / "a")
    _edit_config(tmp_path / "a", lambda c: c.update(format=99))
    with pytest.raises(ValueError, match="format 99"):
        load_model(tmp_path / "a")


def test_huge_model_in_config_is_refused_before_allocating(tmp_path):
    save_model(_model(), tmp_path / "a")
    _edit_config(tmp_path / "a", lambda c: c["config"].update(n_factors=10**9))
    t = time.perf_counter()
    with pytest.raises(ValueError, match="too large"):
        load_model(tmp_path / "a")
    assert time.perf_counter() - t < 5


def test_invalid_json_is_a_clear_error(tmp_path):
    save_model(_model(), tmp_path / "a")
    (tmp_path / "a" / "config.json").write_text('{"format": 2, "kind": ')
    with pytest.raises(ValueError, match="config.json"):
        load_model(tmp_path / "a")


def test_config_linked_to_dev_zero_is_refused(tmp_path):
    save_model(_model(), tmp_path / "a")
    (tmp_path / "a" / "config.json").unlink()
    (tmp_path / "a" / "config.json").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="not a regular file"):
        read_config(tmp_path / "a")


def test_config_fifo_does_not_hang(tmp_path):
    save_model(_model(), tmp_path / "a")
    (tmp_path / "a" / "config.json").unlink()
    os.mkfifo(tmp_path / "a" / "config.json")
    errors: list[Exception] = []

    def read() -> None:
        try:
            read_config(tmp_path / "a")
        except ValueError as e:
            errors.append(e)

    reader = threading.Thread(target=read, daemon=True)  # a hang would leave it blocked: daemon
    reader.start()
    reader.join(10)
    assert not reader.is_alive() and "not a regular file" in str(errors[0])


def test_oversized_items_file_is_refused(tmp_path, tiny, monkeypatch):
    import collabkit.checkpoint as ck

    save_model(DotProductBias.from_data(tiny, n_factors=4), tmp_path / "a", items=tiny.items)
    monkeypatch.setattr(ck, "MAX_JSON_BYTES", 100)
    with pytest.raises(ValueError, match="larger than"):
        load_items(tmp_path / "a")


def test_failed_write_keeps_the_old_model(tmp_path, monkeypatch):
    import collabkit.checkpoint as ck

    save_model(_model(60, 40), tmp_path / "m")

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "save_file", disk_full)
    with pytest.raises(OSError):
        save_model(_model(30, 20), tmp_path / "m")
    assert len(load_model(tmp_path / "m").users) == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# --- SIGKILL at random points -------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_during_save_leaves_old_or_new_model(tmp_path):
    folder = tmp_path / "m"
    titles = make_ratings(60, 40).items
    old, new = _model(2000, 40), _model(1500, 40, seed=1)
    save_model(old, folder, items=titles)

    def check() -> str:
        model, items = load_model(folder), load_items(folder)
        state = "old" if len(model.users) == 2000 and items is not None else "new"
        assert state == "old" or (len(model.users) == 1500 and items is None), "a mix of two models"
        for (
            leftover
        ) in tmp_path.iterdir():  # a killed writer leaves only temporaries beside the model
            if leftover.name != "m":
                assert leftover.name.startswith((".m.tmp-", ".m.old-")), leftover.name
                shutil.rmtree(leftover)
        save_model(old, folder, items=titles)  # reset for the next run
        return state

    outcomes = kill_at_every_step(
        lambda: save_model(new, folder), check, extra=[(checkpoint, "_exchange")]
    )
    assert outcomes[0] == "old" and outcomes[-1] == "new"
    assert outcomes == sorted(outcomes, reverse=True), "once the new model is in place it stays"
    kill_at_random_times(lambda: save_model(new, folder), check, n_kills=20)  # check: never a mix
    save_model(_model(), folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_readers_during_repeated_saves_get_one_whole_model(tmp_path):
    """Loads racing saves of two same-shaped models: each load is one of them, exactly."""
    folder = tmp_path / "m"
    a, b = _model(60, 40, seed=1), _model(60, 40, seed=2)
    save_model(a, folder)
    expected = {round(float(m.user_factors.weight.detach().sum()), 4) for m in (a, b)}
    stop = threading.Event()

    def writer() -> None:
        k = 0
        while not stop.is_set():
            save_model((a, b)[k % 2], folder)
            k += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(60):
            got = load_model(folder)
            assert round(float(got.user_factors.weight.detach().sum()), 4) in expected
    finally:
        stop.set()
        thread.join()
