"""Errors that name their fix: a separator the suffix does not read, a model's deleted ratings file,
a click log read with the default --implicit threshold."""

from __future__ import annotations

from pathlib import Path

import pytest

from collabkit.data.implicit import to_implicit
from collabkit.data.readers import RatingsFormatError, read_items, read_ratings
from tests.cli.test_edge_errors import _error, _run
from tests.conftest import make_ratings


@pytest.fixture(scope="module")
def frame():
    return make_ratings(n_users=20, n_items=15).frame


@pytest.mark.parametrize("name", ["u1.base", "data.csv"])
def test_tab_file_without_tsv_suffix_names_the_suffix(tmp_path: Path, frame, name):
    path = tmp_path / name
    frame.to_csv(path, sep="\t", header=False, index=False)
    with pytest.raises(RatingsFormatError) as e:
        read_ratings(path, names=["user", "item", "rating", "ts"])
    assert str(e.value) == (
        f"{path}: line 1: 1 field, but the line holds tabs: the separator is chosen by the suffix "
        "(.csv: comma, .tsv: tab); rename the file to .tsv"
    )


def test_tab_file_with_header_named_csv(tmp_path: Path, frame):
    path = tmp_path / "data.csv"
    frame.to_csv(path, sep="\t", index=False)
    with pytest.raises(RatingsFormatError, match=r"line 1: 1 field, but the line holds tabs: .*rename the file to \.tsv$"):
        read_ratings(path)


def test_comma_file_named_tsv(tmp_path: Path, frame):
    path = tmp_path / "data.tsv"
    frame.to_csv(path, index=False)
    with pytest.raises(RatingsFormatError, match=r"1 field, but the line holds commas: .*rename the file to \.csv$"):
        read_ratings(path)


def test_semicolon_file_says_which_separators_are_read(tmp_path: Path, frame):
    path = tmp_path / "data.csv"
    path.write_text("\n" + frame.to_csv(sep=";", index=False).replace(".0;", ",0;"), encoding="utf-8")
    with pytest.raises(RatingsFormatError) as e:
        read_ratings(path)
    assert str(e.value) == (
        f"{path}: line 2: 1 field, but the line holds semicolons: only comma (.csv) and tab (.tsv) "
        "separated files are read; convert the file to one of them"
    )


def test_semicolon_items_file(tmp_path: Path):
    path = tmp_path / "items.csv"
    path.write_text("item;title\n1;Toy Story\n", encoding="utf-8")
    with pytest.raises(RatingsFormatError, match="holds semicolons"):
        read_items(path)


def test_explicit_sep_names_the_sep(tmp_path: Path, frame):
    path = tmp_path / "data.txt"
    frame.to_csv(path, sep="\t", index=False)
    with pytest.raises(RatingsFormatError, match=r"1 field, but the line holds tabs: it is read with sep='\|'; pass sep='\\t'$"):
        read_ratings(path, sep="|")


def test_one_column_without_other_separators_keeps_its_message(tmp_path: Path):
    path = tmp_path / "data.csv"
    path.write_text("user\n1\n2\n", encoding="utf-8")
    with pytest.raises(RatingsFormatError) as e:
        read_ratings(path)
    assert "holds" not in str(e.value) and "item" in str(e.value)


def test_quoted_separator_in_a_proper_file_is_read(tmp_path: Path):
    path = tmp_path / "data.csv"
    path.write_text('user,item,rating\n"a;b",x\ty,4\n', encoding="utf-8")
    assert len(read_ratings(path)) == 1


def test_cli_tab_file_named_csv(tmp_path: Path, frame):
    path = tmp_path / "data.csv"
    frame.to_csv(path, sep="\t", header=False, index=False)
    line = _error("train", "--ratings", path, "--names", "user,item,rating,ts", "--model", "baseline",
                  "--out", tmp_path / "m")  # fmt: skip
    assert line.endswith("1 field, but the line holds tabs: the separator is chosen by the suffix "
                         "(.csv: comma, .tsv: tab); rename the file to .tsv")  # fmt: skip


def test_deleted_training_ratings_say_how_to_point_elsewhere(tmp_path: Path, frame):
    path = tmp_path / "src.csv"
    frame.to_csv(path, index=False)
    model = tmp_path / "model"
    result = _run("train", "--ratings", path, "--model", "baseline", "--out", model)
    assert result.exit_code == 0, result.output
    path.unlink()
    expected = (
        f"error: {path}: the ratings {model} was trained on are no longer there; "
        "pass --ratings FILE (or --dataset) to read them from elsewhere"
    )
    assert _error("evaluate", model) == expected
    assert "Errno" not in _error("recommend", model, "1")
    moved = tmp_path / "moved.csv"
    frame.to_csv(moved, index=False)
    result = _run("evaluate", model, "--ratings", moved)
    assert result.exit_code == 0, result.output


def test_click_log_with_default_threshold_names_threshold_zero(frame):
    clicks = make_ratings(n_users=20, n_items=15)
    clicks.frame["rating"] = 1.0
    with pytest.raises(ValueError) as e:
        to_implicit(clicks)
    assert str(e.value).endswith(
        "no rating is >= 4.0 (ratings span 1..1); a log without ratings counts every row as 1: "
        "pass --threshold 0 (threshold=None) to take every row as a positive"
    )
    low = make_ratings(n_users=20, n_items=15)
    low.frame["rating"] = 2.0
    with pytest.raises(ValueError) as e:
        to_implicit(low)
    assert str(e.value).endswith("(ratings span 2..2)")


def test_cli_click_log_implicit(tmp_path: Path, frame):
    path = tmp_path / "clicks.csv"
    frame[["user", "item"]].to_csv(path, index=False)
    line = _error("train", "--ratings", path, "--rating-col", "", "--implicit", "--model", "most-popular",
                  "--out", tmp_path / "m")  # fmt: skip
    assert line.endswith("pass --threshold 0 (threshold=None) to take every row as a positive")


def test_a_compressed_tab_file_is_read_with_tabs(tmp_path):
    import gzip

    from collabkit.data.readers import read_ratings

    path = tmp_path / "r.tsv.gz"
    with gzip.open(path, "wt") as f:
        f.write("user\titem\trating\n1\t10\t4\n2\t10\t3\n2\t11\t5\n")
    assert read_ratings(path).frame["rating"].tolist() == [4.0, 3.0, 5.0]
