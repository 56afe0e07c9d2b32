"""`predict` and --ratings problems end in one clear error line (exit 2), never a traceback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from collabkit.checkpoint import save_model
from collabkit.cli import app
from collabkit.models.dot import DotProductBias
from tests.conftest import make_ratings

runner = CliRunner()


@pytest.fixture
def model_dir(tmp_path):
    save_model(DotProductBias.from_data(make_ratings(), n_factors=4), tmp_path / "m")
    return tmp_path / "m"


def _error(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    return result.output


def _rewrite_config(folder, edit):
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "model.safetensors").unlink(), "model.safetensors"),
        (lambda f: (f / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}"), "model.safetensors"),
        (lambda f: (f / "config.json").write_text("{not json"), "invalid JSON"),
        (lambda f: _rewrite_config(f, lambda c: c["config"].update(n_factors=7)), "model.safetensors"),
    ],
    ids=["missing-weights", "truncated-weights", "invalid-json", "shape-mismatch"],
)
def test_a_damaged_model_is_one_clear_error(model_dir, damage, message):
    damage(model_dir)
    assert message in _error("predict", model_dir, "1", "101")


def test_says_which_id_is_unknown(model_dir):
    out = _error("predict", model_dir, "1", "99999")
    assert "unknown item '99999'" in out and "user" not in out.split("unknown item")[0]
    assert "unknown user 'nobody'" in _error("predict", model_dir, "nobody", "101")
    both = _error("predict", model_dir, "nobody", "99999")
    assert "unknown user 'nobody'" in both and "unknown item '99999'" in both


def test_a_directory_as_ratings_is_a_clear_error(tmp_path):
    (tmp_path / "ratings.csv").mkdir()
    assert "is a directory" in _error("train", "--ratings", tmp_path / "ratings.csv", "--split", "none")


def test_train_out_into_someone_elses_folder_fails_before_training(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "config.json").write_text('{"learning_rate": 1}')
    ratings = tmp_path / "r.csv"
    make_ratings().frame.to_csv(ratings, index=False)
    out = _error("train", "--ratings", ratings, "--epochs", "1", "--out", theirs)
    assert "not written by collabkit" in out and "epoch" not in out
    assert (theirs / "config.json").read_text() == '{"learning_rate": 1}'
