"""A file output replaces only an earlier output of its kind: `recommend-all --out` never the model's
data or a user's file, `lr-find --plot` never a file it did not draw, `update --out` never its parent."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.cli.test_edge_errors import _error, _run
from tests.conftest import make_ratings


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(own.csv, model dir): a baseline trained on own.csv, which the model records."""
    folder = tmp_path_factory.mktemp("guards")
    own = folder / "own.csv"
    make_ratings(n_users=30, n_items=20, density=0.4).frame.to_csv(own, index=False)
    result = _run("train", "--ratings", own, "--model", "baseline", "--no-progress", "--out", folder / "m_own")
    assert result.exit_code == 0, result.output
    return own, folder / "m_own"


@pytest.fixture
def no_sweep(monkeypatch):
    """lr-find's sweep fails the test if it runs: its options are checked before the work."""

    def sweep(*args, **kwargs):
        raise AssertionError("the sweep ran before the bad --plot was refused")

    monkeypatch.setattr("collabkit.train.lr_find.lr_find", sweep)


def test_recommend_all_never_replaces_the_models_own_ratings(trained):
    own, model_dir = trained
    before = own.read_bytes()
    line = _error("recommend-all", model_dir, "-n", "1", "--out", own)
    assert str(own) in line and "refusing to replace it" in line and "--out" in line
    assert own.read_bytes() == before
    assert _run("evaluate", model_dir).exit_code == 0  # the recorded data still matches its sha256


@pytest.mark.parametrize("name", ["notes.csv", "table.parquet"])
def test_recommend_all_never_replaces_a_file_it_did_not_write(trained, tmp_path, name):
    _, model_dir = trained
    victim = tmp_path / name
    mine = pd.DataFrame({"user": [1], "item": [2], "note": ["mine"]})
    if name.endswith(".csv"):
        mine.to_csv(victim, index=False)
    else:
        mine.to_parquet(victim)
    before = victim.read_bytes()
    line = _error("recommend-all", model_dir, "-n", "1", "--out", victim)
    assert line == (
        f"error: {victim}: exists and is not a recommend-all output collabkit wrote; "
        "refusing to replace it: choose another --out"
    )
    assert victim.read_bytes() == before


@pytest.mark.parametrize("name", ["recs.csv", "recs.parquet"])
def test_recommend_all_replaces_its_own_earlier_output(trained, tmp_path, name):
    _, model_dir = trained
    out = tmp_path / name
    assert _run("recommend-all", model_dir, "-n", "1", "--out", out).exit_code == 0
    assert _run("recommend-all", model_dir, "-n", "2", "--out", out).exit_code == 0
    recs = pd.read_csv(out) if name.endswith(".csv") else pd.read_parquet(out)
    assert recs["rank"].max() == 2


def test_lr_find_plot_never_replaces_a_file_it_did_not_draw(trained, tmp_path, no_sweep):
    own, _ = trained
    victim = tmp_path / "holiday.png"
    victim.write_bytes(b"\x89PNG\r\n\x1a\n not drawn by collabkit")
    line = _error("lr-find", "--ratings", own, "--no-validate", "--plot", victim)
    assert line == (
        f"error: {victim}: exists and is not a PNG plot collabkit wrote; refusing to replace it: choose another --plot"
    )
    assert victim.read_bytes() == b"\x89PNG\r\n\x1a\n not drawn by collabkit"


def test_lr_find_plot_must_be_a_png_before_the_sweep(trained, tmp_path, no_sweep):
    own, _ = trained
    victim = tmp_path / "victim.csv"
    victim.write_text("user,item,rating\n1,2,3\n")
    line = _error("lr-find", "--ratings", own, "--no-validate", "--plot", victim)
    assert line == "error: --plot must end in .png (the plot is a PNG), not 'victim.csv'"
    assert victim.read_text() == "user,item,rating\n1,2,3\n"


def test_lr_find_replaces_its_own_earlier_plot(trained, tmp_path):
    own, _ = trained
    plot = tmp_path / "lr.png"
    for _ in range(2):
        result = _run("lr-find", "--ratings", own, "--no-validate", "--plot", plot)
        assert result.exit_code == 0, result.output
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_update_never_writes_over_its_parent(tmp_path):
    old = tmp_path / "old.csv"
    make_ratings(n_users=30, n_items=20, density=0.4).frame.to_csv(old, index=False)
    model_dir = tmp_path / "m"
    result = _run("train", "--ratings", old, "--split", "none", "--epochs", "1", "--n-factors", "2",
                  "--no-progress", "--out", model_dir)  # fmt: skip
    assert result.exit_code == 0, result.output
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    for out in (model_dir, tmp_path / "m" / ".." / "m"):
        line = _error("update", model_dir, "--ratings", old, "--out", out, "--no-progress")
        assert line == (
            f"error: --out {out} is the model being updated; the parent is left as it is: choose another --out"
        )
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before


def test_pca_replaces_only_its_own_earlier_maps(tmp_path):
    """A re-run replaces the map it drew; the user's files, and a path of the wrong kind, are refused."""
    ratings = tmp_path / "r.csv"
    make_ratings().frame.to_csv(ratings, index=False)
    model = tmp_path / "m"
    assert _run("train", "--ratings", ratings, "--n-factors", "4", "--epochs", "1", "--no-progress", "--out", model).exit_code == 0
    png, html = tmp_path / "map.png", tmp_path / "map.html"
    for _ in range(2):  # the second run replaces the first's maps
        assert _run("pca", model, "--png", png, "--html", html).exit_code == 0
    notes = tmp_path / "notes.html"
    notes.write_text("<p>mine</p>")
    assert "refusing to replace" in _error("pca", model, "--png", png, "--html", notes)
    assert notes.read_text() == "<p>mine</p>"
    assert "--png must end in .png" in _error("pca", model, "--png", tmp_path / "map.csv", "--html", html)
