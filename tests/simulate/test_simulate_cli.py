"""`collabkit simulate` end to end on a small CSV, and its errors."""

import json

import pytest
from typer.testing import CliRunner

from collabkit.cli import app
from tests.conftest import make_ratings

runner = CliRunner()


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "ratings.csv"
    make_ratings(n_users=80, n_items=120).frame.to_csv(path, index=False)
    return path


@pytest.mark.slow  # two matplotlib figures: ~10 s on the shared machine
def test_simulate_json_png_html(csv, tmp_path):
    args = [
        "simulate",
        "--ratings",
        csv,
        "--world",
        "minority_share=0.0, recruit_rate=0.0",
        "--rounds",
        "2",
        "--model",
        "dot-bias(n_factors=4, epochs=2)",
    ]
    args += [
        "--mitigation",
        "none",
        "--mitigation",
        "cap=20",
        "--out",
        tmp_path / "sim",
    ]
    result = runner.invoke(app, [str(a) for a in args] + ["--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["runs"]) == {"none", "cap=20"}
    assert len(out["runs"]["none"]["per_round"]) == 2
    assert (tmp_path / "sim" / "loop.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "sim" / "loop.html").read_text()
    assert "Plotly.newPlot" in page and "<script src=" not in page  # interactive, offline


def test_simulate_errors_are_messages(csv):
    result = runner.invoke(app, ["simulate", "--ratings", str(csv), "--mitigation", "shuffle"])
    assert result.exit_code == 2 and "unknown mitigation" in result.output
    # a CSV has no genres, so the default minority (animation fans) cannot exist
    result = runner.invoke(app, ["simulate", "--ratings", str(csv), "--rounds", "1"])
    assert result.exit_code == 2 and "no genre" in result.output


def test_simulate_table_shows_the_concentration_measures(csv):
    args = ["simulate", "--ratings", csv, "--world", "minority_share=0.0, recruit_rate=0.0", "--rounds", "2",
            "--model", "dot-bias(n_factors=4, epochs=1)"]  # fmt: skip
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for label in ("fav share of majority lists", "exposure gini", "gini, majority lists", "top-1% share, majority lists"):
        assert label in result.stdout
