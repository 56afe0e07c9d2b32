"""Model folders are whole: written as a unit, checked at load, never mixed with another model or folder."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import SafetensorError

from collabkit import checkpoint
from collabkit.checkpoint import load_items, load_model, read_config, save_model
from collabkit.files import MARKER, OutputError, folder_holds, mark_folder
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


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"), "no space left"),
        (SafetensorError("Error while serializing: I/O error: File too large (os error 27)"), "file too large"),
        (OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
    ],
)
def test_an_os_error_while_saving_is_one_line_naming_the_folder(tmp_path, monkeypatch, error, reason):
    import collabkit.checkpoint as ck

    save_model(_model(60, 40), tmp_path / "m")

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(ck, "save_file", fail)
    with pytest.raises(OutputError) as caught:
        save_model(_model(30, 20), tmp_path / "m")
    assert str(caught.value).startswith(f"cannot write {tmp_path / 'm'}: {reason}")
    assert "\n" not in str(caught.value)
    assert len(load_model(tmp_path / "m").users) == 60


# --- config.json is checked whole: format, manifest, config -------------------------------------
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["config"].update(n_factors="50"), "n_factors must be a whole number >= 1, got '50' (str)"),
        (lambda c: c["config"].update(n_factors=50.0), "got 50.0"),
        (lambda c: c["config"].update(n_factors=None), "got None"),
        (lambda c: c["config"].update(y_range=[5, 1]), "low < high"),
        (lambda c: c["config"].update(y_range=[float("nan"), 5]), "y_range must be"),
        (lambda c: c["config"].update(epochs=True), "epochs must be"),
        (lambda c: c["config"].update(learning_rate=1), "unknown option"),
        (lambda c: c.update(config="abc"), "config must be an object"),
        (lambda c: c.update(files="abc"), "malformed manifest"),
        (lambda c: c.update(files={}), "malformed manifest"),
        (lambda c: c["files"]["model.safetensors"].update(size="10"), "malformed manifest entry"),
        (lambda c: c["files"]["model.safetensors"].update(sha256=None), "malformed manifest entry"),
        (lambda c: c["files"].update({"../x": c["files"]["model.safetensors"]}), "malformed manifest entry"),
        (lambda c: c["files"]["model.safetensors"].update(size=10**12), "too large"),
        (lambda c: c.update(format=1), "model format 1 is not supported"),
        (lambda c: c.update(format=True), "model format true is not supported"),
        (lambda c: c.update(format=2.0), "model format 2.0 is not supported"),
        (lambda c: c.update(format="2"), "is not supported"),
        (lambda c: c.update(users={"ids": [1]}), "malformed model config"),
    ],
)
def test_a_bad_config_json_is_one_clear_error(tmp_path, edit, message):
    save_model(_model(), tmp_path / "a")
    _edit_config(tmp_path / "a", edit)
    t = time.perf_counter()
    with pytest.raises(ValueError) as caught:
        load_model(tmp_path / "a")
    assert message in str(caught.value) and "config.json" in str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 1000
    assert time.perf_counter() - t < 5  # a 10**12-byte size is not read (it was a MemoryError)


@pytest.mark.parametrize("fmt", [1, True])
def test_an_old_or_boolean_format_cannot_skip_the_manifest(tmp_path, fmt):
    """Format 1 had no manifest: marking a folder format 1 (or true, which == 1) loaded another
    model's weights without a word."""
    save_model(_model(60, 40), tmp_path / "a")
    save_model(_model(60, 40, seed=3), tmp_path / "b")
    shutil.copy(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    _edit_config(tmp_path / "a", lambda c: c.update(format=fmt))
    with pytest.raises(ValueError, match="is not supported"):
        load_model(tmp_path / "a")


# --- folders collabkit owns ---------------------------------------------------------------------
def test_a_saved_model_folder_carries_its_marker(tmp_path):
    save_model(_model(), tmp_path / "m")
    assert folder_holds(tmp_path / "m") == "model"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [MARKER, "config.json", "model.safetensors"]


def test_a_look_alike_config_does_not_make_a_folder_ours(tmp_path):
    """config.json with the keys format, kind and users was enough to have the folder deleted."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "config.json").write_text(json.dumps({"format": 2, "kind": "dot", "users": 1}))
    (theirs / "thesis.tex").write_text("years of work")
    for write in (lambda: save_model(_model(), theirs), lambda: checkpoint.check_out(theirs)):
        with pytest.raises(ValueError, match="not written by collabkit .*thesis.tex"):
            write()
    assert (theirs / "thesis.tex").read_text() == "years of work"


def test_a_model_folder_with_anything_else_in_it_is_not_replaced(tmp_path):
    save_model(_model(), tmp_path / "m")
    (tmp_path / "m" / "index.html").write_text("a report written into the model folder")
    with pytest.raises(ValueError, match="also holds index.html, which collabkit did not write"):
        save_model(_model(30, 20), tmp_path / "m")
    assert (tmp_path / "m" / "index.html").exists() and len(load_model(tmp_path / "m").users) == 60


def test_a_report_folder_is_not_replaced_by_a_model(tmp_path):
    report = tmp_path / "r"
    report.mkdir()
    mark_folder(report, "report")
    (report / "index.html").write_text("<p>report</p>")
    with pytest.raises(ValueError, match="holds a collabkit report, not a model"):
        save_model(_model(), report)
    assert (report / "index.html").exists()


def test_a_model_saved_before_markers_is_still_replaced(tmp_path):
    save_model(_model(), tmp_path / "m")
    (tmp_path / "m" / MARKER).unlink()
    save_model(_model(30, 20), tmp_path / "m")
    assert len(load_model(tmp_path / "m").users) == 30 and folder_holds(tmp_path / "m") == "model"


# --- the non-atomic fallback ------------------------------------------------------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_a_load_recovers_a_save_killed_between_the_fallbacks_renames(tmp_path):
    """Without an atomic exchange the old folder is moved aside, then the new one in; a SIGKILL
    between the two left no model folder, only the hidden .m.old-PID."""
    save_model(_model(60, 40), tmp_path / "m")
    (tmp_path / "m").rename(tmp_path / f".m.old-{_dead_pid()}")
    assert len(load_model(tmp_path / "m").users) == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.slow
def test_sigkill_during_a_save_without_exchange_leaves_old_or_new_model(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "_exchange", lambda a, b: False)  # as on a file system without it
    folder = tmp_path / "m"
    old, new = _model(200, 40), _model(150, 40, seed=1)
    save_model(old, folder)

    def check() -> str:
        state = "old" if len(load_model(folder).users) == 200 else "new"  # the load recovers
        for leftover in tmp_path.iterdir():
            if leftover.name != "m":
                assert leftover.name.startswith((".m.tmp-", ".m.old-")), leftover.name
                shutil.rmtree(leftover)
        save_model(old, folder)
        return state

    outcomes = kill_at_every_step(lambda: save_model(new, folder), check)
    assert outcomes[0] == "old" and outcomes[-1] == "new"
    assert outcomes == sorted(outcomes, reverse=True), "once the new model is in place it stays"


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
