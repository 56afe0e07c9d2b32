"""What the command-line tests share: a small ratings file and a model trained on it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from collabkit.cli import app
from tests.conftest import make_ratings


@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "r.csv"
    make_ratings().frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, ratings):
    out = tmp_path_factory.mktemp("models") / "m"
    args = ["train", "--ratings", str(ratings), "--n-factors", "4", "--epochs", "1", "--no-progress", "--out", str(out)]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    return out
