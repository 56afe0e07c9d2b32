"""Columns are never shifted, renamed or picked silently: --names must match the file's fields,
and a header may not name a column twice."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collabkit.cli import app
from collabkit.data.readers import RatingsFormatError, read_ratings

FOUR = "1,10,5,100\n1,20,3,200\n2,10,4,300\n2,30,2,400\n"


def write(tmp_path: Path, text: str, name: str = "ratings.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error(path: Path, **kwargs) -> str:
    with pytest.raises(RatingsFormatError) as err:
        read_ratings(path, **kwargs)
    return str(err.value)


def train(tmp_path: Path, path: Path, *args: str):
    out = tmp_path / "model"
    cmd = ["train", "--model", "baseline", "--split", "none", "--ratings", str(path), "--out", str(out), *args]
    return CliRunner().invoke(app, cmd)


def test_fewer_names_than_fields_is_an_error_not_a_shift(tmp_path):
    path = write(tmp_path, FOUR, "four.csv")
    msg = error(path, names=["user", "item", "rating"])
    assert msg == f"{path}: line 1: 4 fields but --names gives 3 names"


def test_more_names_than_fields_is_an_error(tmp_path):
    path = write(tmp_path, FOUR, "four.csv")
    msg = error(path, names=["user", "item", "rating", "ts", "extra"])
    assert msg == f"{path}: line 1: 4 fields but --names gives 5 names"


def test_names_count_names_the_first_rows_line_after_blank_lines(tmp_path):
    path = write(tmp_path, "\n\n" + FOUR, "four.csv")
    assert error(path, names=["user", "item", "rating"]).startswith(f"{path}: line 3: 4 fields")


def test_names_count_is_checked_in_a_compressed_file(tmp_path):
    path = tmp_path / "four.csv.gz"
    path.write_bytes(gzip.compress(FOUR.encode()))
    assert "4 fields but --names gives 3 names" in error(path, names=["user", "item", "rating"])


def test_a_name_given_twice_names_the_flag(tmp_path):
    path = write(tmp_path, "1,10,5\n2,10,4\n")
    assert error(path, names=["user", "user", "rating"]) == "--names: 'user' is given twice"


def test_matching_names_read_as_before(tmp_path):
    path = write(tmp_path, FOUR, "four.csv")
    r = read_ratings(path, names=["user", "item", "rating", "ts"], timestamp_col="ts")
    assert list(r.frame["user"]) == [1, 1, 2, 2] and list(r.frame["item"]) == [10, 20, 10, 30]
    assert list(r.frame["rating"]) == [5, 3, 4, 2]


@pytest.mark.parametrize(("header", "column"), [("user,item,rating,rating", "rating"), ("user,item,rating,user", "user")])
def test_a_header_naming_a_column_twice_is_an_error(tmp_path, header, column):
    path = write(tmp_path, header + "\n1,1,5,1\n1,2,3,1\n2,1,4,1\n2,3,2,1\n", "dupcol.csv")
    assert error(path) == f"{path}: line 1: column '{column}' appears twice"


def test_a_pandas_mangled_name_is_not_a_column(tmp_path):
    path = write(tmp_path, "user,item,rating,rating\n1,1,5,1\n2,1,4,1\n", "dupcol.csv")
    assert error(path, rating_col="rating.1") == f"{path}: line 1: column 'rating' appears twice"


def test_blank_header_cells_are_not_repeated_names(tmp_path):
    path = write(tmp_path, "user,item,rating,,\n1,1,5,,\n2,1,4,,\n")
    assert list(read_ratings(path).frame["rating"]) == [5, 4]


def test_data_rows_wider_than_the_header_are_an_error_not_a_shift(tmp_path):
    path = write(tmp_path, "user,item,rating\n" + FOUR)
    assert error(path) == f"{path}: line 2: malformed row: expected 3 fields, saw 4"


def test_cli_prints_one_line_for_each_column_problem(tmp_path):
    four = write(tmp_path, FOUR, "four2.csv")
    dup = write(tmp_path, "user,item,rating,rating\n1,1,5,1\n1,2,3,1\n2,1,4,1\n2,3,2,1\n", "dupcol.csv")
    cases = [
        (four, ["--names", "user,item,rating"], f"error: {four}: line 1: 4 fields but --names gives 3 names"),
        (dup, [], f"error: {dup}: line 1: column 'rating' appears twice"),
        (four, ["--names", "user,user,rating,ts"], "error: --names: 'user' is given twice"),
    ]
    for path, args, expected in cases:
        result = train(tmp_path, path, *args)
        assert result.exit_code != 0, result.output
        assert expected in result.output, result.output
