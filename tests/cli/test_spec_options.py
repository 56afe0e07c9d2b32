"""Lists of model specs (`compare --models`, `report --baselines`) and `similar --items`: a bad entry
is one error line naming the option, found before the work, and nothing given is dropped."""

from __future__ import annotations

import json

import pytest

from collabkit.train.spec import parse_specs
from tests.cli.test_edge_errors import _error, _run
from tests.conftest import make_ratings


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    path = tmp_path_factory.mktemp("items") / "items.csv"
    make_ratings().items.reset_index().to_csv(path, index=False)
    return path


def test_parse_specs_keeps_bracketed_commas_and_refuses_gaps_and_repeats():
    assert [s.name for s in parse_specs("mean, nn(layers=(10, 5))", "--models")] == ["mean", "nn(layers=(10, 5))"]
    assert parse_specs(" ", "--baselines") == []
    with pytest.raises(ValueError, match=r"^--models: entry 3 is empty$"):
        parse_specs("mean,bias,", "--models")
    with pytest.raises(ValueError, match=r"^--models: 'dot-bias\(n_factors = 4\)' is given twice \(as 'dot-bias\(n_factors=4\)' first\)$"):
        parse_specs("dot-bias(n_factors=4),dot-bias(n_factors = 4)", "--models")


def test_report_checks_every_baseline_spec_before_drawing_anything(model_dir, tmp_path):
    out = tmp_path / "rep"
    line = _error("report", model_dir, "--out", out, "--baselines", "mean,dot-bias(")
    assert line.startswith("error: --baselines: bad model spec 'dot-bias(':") and "column 10" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("baselines", "problem"),
    [("mean,,bias", "--baselines: entry 2 is empty"), ("mean,mean", "--baselines: 'mean' is given twice")],
)
def test_report_refuses_an_empty_or_repeated_baseline(model_dir, tmp_path, baselines, problem):
    assert _error("report", model_dir, "--out", tmp_path / "rep", "--baselines", baselines) == f"error: {problem}"
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize(
    ("models", "problem"),
    [
        ("mean,,bias", "--models: entry 2 is empty"),
        ("mean,mean", "--models: 'mean' is given twice"),
        ("", "--models is empty; e.g. mean,dot-bias,most-popular"),
    ],
)
def test_compare_refuses_an_empty_or_repeated_model(ratings, models, problem):
    assert _error("compare", "--ratings", ratings, "--models", models) == f"error: {problem}"


def test_train_refuses_an_empty_model(ratings):
    assert _error("train", "--ratings", ratings, "--model", "", "--no-progress").startswith("error: --model is empty; e.g. dot-bias")


def test_similar_refuses_an_items_file_it_cannot_read(model_dir, tmp_path):
    missing = tmp_path / "nope.csv"
    assert _error("similar", model_dir, "101", "--items", missing) == f"error: --items {missing}: no such file"


def test_similar_searches_the_titles_of_the_items_given(model_dir, items):
    result = _run("similar", model_dir, "Movie 3 (1983)", "--items", items, "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    titles = [row["title"] for row in json.loads(result.stdout)["similar"]]
    assert len(titles) == 3 and all(t.startswith("Movie ") for t in titles)


def test_similar_refuses_data_options_that_do_not_work(model_dir, tmp_path):
    missing = tmp_path / "gone.csv"
    assert _error("similar", model_dir, "101", "--ratings", missing) == f"error: {missing}: no such file"
