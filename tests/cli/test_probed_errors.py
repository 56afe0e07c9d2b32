"""Inputs a prober found slipping through at the command line: each is now one error line (exit 2)
naming the option or the file, or read as the user described it."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_edge_errors import _error, _run
from tests.conftest import make_ratings


@pytest.mark.parametrize("k", ["0", "-5"])
def test_evaluate_refuses_a_top_k_below_one(model_dir, k):
    result = _run("evaluate", model_dir, "-k", k)
    assert result.exit_code == 2 and "Traceback" not in result.output and "-k" in result.output, result.output


@pytest.mark.parametrize("kind", ["mean", "baseline", "knn"])
def test_lr_find_refuses_kinds_it_cannot_sweep(ratings, kind):
    line = _error("lr-find", "--ratings", ratings, "--no-validate", "--model", kind)
    assert f"a {kind!r} model is not trained by the one-cycle engine" in line and "dot-bias" in line


def test_a_negative_seed_names_the_option(ratings):
    result = _run("train", "--ratings", ratings, "--model", "baseline", "--seed", "-1", "--out", "unused")
    assert result.exit_code == 2 and "--seed" in result.output and "Traceback" not in result.output


def test_evaluate_reads_a_test_file_as_the_training_file_was_read_and_refuses_off_scale_ratings(tmp_path):
    frame = make_ratings(n_users=60, n_items=40, density=0.3, seed=4).frame[["user", "item", "rating", "timestamp"]]
    frame.iloc[:-50].to_csv(tmp_path / "train.csv", index=False, header=False)
    frame.iloc[-50:].to_csv(tmp_path / "test.csv", index=False, header=False)
    names = ["--names", "user,item,rating,when", "--timestamp-col", "when"]
    trained = _run("train", "--ratings", tmp_path / "train.csv", *names, "--model", "baseline", "--out", tmp_path / "m")
    assert trained.exit_code == 0, trained.output
    scored = _run("evaluate", tmp_path / "m", "--test", tmp_path / "test.csv", "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["n_test"] == 50  # the recorded --names, not a header from row 1
    bad = frame.iloc[-50:].copy()
    bad.iloc[3, 2] = 50
    bad.to_csv(tmp_path / "bad.csv", index=False, header=False)
    line = _error("evaluate", tmp_path / "m", "--test", tmp_path / "bad.csv")
    assert "bad.csv" in line and "off the model's scale" in line and "the first: 50" in line


@pytest.mark.parametrize(
    ("flags", "words"),
    [(["--rating-col", "user"], "--rating-col 'user' is also --user-col's column"),
     (["--item-col", "user"], "--item-col 'user' is also --user-col's column"),
     (["--item-columns", "rating"], "--item-columns 'rating' is also --rating-col's column")],
)  # fmt: skip
def test_one_column_has_one_role(ratings, flags, words):
    assert words in _error("train", "--ratings", ratings, "--model", "baseline", *flags, "--out", "unused")


@pytest.mark.parametrize("flag", ["--n-users", "--n-items"])
def test_crosstab_refuses_a_count_below_one(ratings, flag):
    result = _run("crosstab", "--ratings", ratings, flag, "0")
    assert result.exit_code == 2 and flag in result.output and "Traceback" not in result.output


def test_an_unknown_split_is_named_with_the_splits_there_are(ratings):
    line = _error("train", "--ratings", ratings, "--model", "baseline", "--split", "bogus", "--out", "unused")
    assert "--split 'bogus' is not a split" in line and "timecut" in line and "u1" in line


def test_cross_validate_refuses_a_split_it_would_ignore(ratings):
    line = _error("cross-validate", "--ratings", ratings, "--model", "baseline", "--split", "none", "--folds", "2")
    assert "makes its own folds" in line


@pytest.mark.parametrize("include_seen", [False, True])
def test_a_broken_items_file_is_named_as_itself_not_as_what_users_rated(model_dir, tmp_path, include_seen):
    """--include-seen would not mend it, and with --include-seen it was silently ignored."""
    (tmp_path / "items.csv").write_text("item,title\n7,a\n7,b\n")
    flags = ["--include-seen"] if include_seen else []
    line = _error("recommend", model_dir, "1", "--items", tmp_path / "items.csv", *flags)
    assert line == f"error: {tmp_path / 'items.csv'}: 1 item id(s) appear more than once, e.g. 7", line
