"""read_ratings: bad input is reported with file, line, column and problem; nothing is dropped."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collabkit.data.readers import RatingsFormatError, read_ratings

HEADER = "user,item,rating\n"


def write(tmp_path: Path, text: str, name: str = "ratings.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error(source, **kwargs) -> str:
    with pytest.raises(RatingsFormatError) as err:
        read_ratings(source, **kwargs)
    return str(err.value)


def assert_names(msg: str, *parts: str) -> None:
    for part in parts:
        assert part in msg, f"{part!r} not in message: {msg}"


# --- good input ---------------------------------------------------------------------------------
def test_reads_a_csv(tmp_path):
    path = write(tmp_path, HEADER + "1,10,4\n1,11,3.5\n2,10,1\n")
    r = read_ratings(path)
    assert list(r.frame.columns) == ["user", "item", "rating"]
    assert r.frame["user"].tolist() == [1, 1, 2]
    assert r.frame["item"].tolist() == [10, 11, 10]
    assert r.frame["rating"].tolist() == [4.0, 3.5, 1.0]
    assert r.frame["rating"].dtype == np.float32
    assert r.name == "ratings"  # the file's stem
    assert r.source == str(path)
    assert not r.has_timestamps


def test_integer_ids_become_int32_or_int64(tmp_path):
    """Files: int32 when every id of the column fits (4 bytes a row), else int64."""
    r = read_ratings(write(tmp_path, HEADER + "1,10,4\n-2,200000000000,3\n+3,5.0,1\n"))
    assert r.frame["user"].dtype == np.int32
    assert r.frame["item"].dtype == np.int64
    assert r.frame["user"].tolist() == [1, -2, 3]
    assert r.frame["item"].tolist() == [10, 200000000000, 5]


def test_string_ids_stay_strings(tmp_path):
    r = read_ratings(write(tmp_path, HEADER + "alice,m1,4\nbob,m2,3\n"))
    assert r.frame["user"].tolist() == ["alice", "bob"]
    assert r.frame["item"].tolist() == ["m1", "m2"]
    assert not pd.api.types.is_integer_dtype(r.frame["user"].dtype)


def test_one_string_id_makes_the_whole_column_strings(tmp_path):
    r = read_ratings(write(tmp_path, HEADER + "1,10,4\nx2,10,3\n"))
    assert r.frame["user"].tolist() == ["1", "x2"]
    assert r.frame["item"].tolist() == [10, 10]


@pytest.mark.parametrize("ids", [["007", "7"], ["1e3", "1000"]])
def test_distinct_id_texts_never_collapse_into_one(tmp_path, ids):
    # "007" and "7" (or "1e3" and "1000") are different ids, not a duplicate pair
    r = read_ratings(write(tmp_path, HEADER + f"{ids[0]},1,4\n{ids[1]},1,3\n"))
    assert r.frame["user"].tolist() == ids
    assert len(r) == 2


def test_huge_integer_ids_stay_strings_instead_of_overflowing(tmp_path):
    big = "123456789012345678901234"
    r = read_ratings(write(tmp_path, HEADER + f"{big},1,4\n"))
    assert r.frame["user"].tolist() == [big]


def test_spaces_after_separators_are_ignored(tmp_path):
    r = read_ratings(write(tmp_path, "user, item, rating\n1, a, 4\n"))
    assert r.frame["item"].tolist() == ["a"]
    assert r.frame["rating"].tolist() == [4.0]


def test_custom_column_names_and_extra_columns(tmp_path):
    path = write(tmp_path, "userId,movieId,stars,when,comment\n1,2,5,100,great\n")
    r = read_ratings(
        path, user_col="userId", item_col="movieId", rating_col="stars", timestamp_col="when"
    )
    assert list(r.frame.columns) == ["user", "item", "rating", "timestamp"]
    assert r.frame.iloc[0].tolist() == [1, 2, 5, 100]


def test_tsv_by_extension(tmp_path):
    r = read_ratings(write(tmp_path, "user\titem\trating\n1\tx,y\t4\n", name="r.tsv"))
    assert r.frame["item"].tolist() == ["x,y"]  # a comma is just text in a TSV
    assert r.name == "r"


def test_tab_extension_and_explicit_sep(tmp_path):
    assert len(read_ratings(write(tmp_path, "user\titem\trating\n1\t2\t4\n", name="r.tab"))) == 1
    r = read_ratings(write(tmp_path, "user;item;rating\n1;2;4\n", name="semi.csv"), sep=";")
    assert r.frame.iloc[0].tolist() == [1, 2, 4]


def test_implicit_interactions_get_rating_one(tmp_path):
    r = read_ratings(write(tmp_path, "user,item\n1,10\n2,10\n"), rating_col=None)
    assert r.frame["rating"].tolist() == [1.0, 1.0]
    assert r.frame["rating"].dtype == np.float32


def test_implicit_ignores_a_rating_column(tmp_path):
    r = read_ratings(write(tmp_path, HEADER + "1,10,abc\n"), rating_col=None)
    assert r.frame["rating"].tolist() == [1.0]


def test_timestamps_as_epoch_numbers(tmp_path):
    r = read_ratings(
        write(tmp_path, "user,item,rating,ts\n1,2,3,874965758\n1,3,4,874965759.7\n"),
        timestamp_col="ts",
    )
    assert r.has_timestamps
    assert r.frame["timestamp"].dtype == np.int64
    assert r.frame["timestamp"].tolist() == [874965758, 874965759]


def test_timestamps_as_iso_dates(tmp_path):
    text = (
        "user,item,rating,ts\n"
        "1,2,3,1970-01-02\n"
        "1,3,4,2020-01-01T00:00:10\n"  # date and date-time mixed in one column
        "1,4,4,2020-01-01T01:00:00+01:00\n"  # offsets are honoured
    )
    r = read_ratings(write(tmp_path, text), timestamp_col="ts")
    assert r.frame["timestamp"].dtype == np.int64
    assert r.frame["timestamp"].tolist() == [86400, 1577836810, 1577836800]


def test_timestamps_from_a_datetime_column():
    df = pd.DataFrame(
        {"user": [1], "item": [2], "rating": [3.0], "ts": pd.to_datetime(["2020-01-01 00:00:10"])}
    )
    r = read_ratings(df, timestamp_col="ts")
    assert r.frame["timestamp"].tolist() == [1577836810]  # seconds, not micro/nanoseconds


def test_notes_say_how_many_rows_were_read_and_kept(tmp_path):
    path = write(tmp_path, HEADER + "1,10,4\n2,10,3\n3,10,5\n")
    r = read_ratings(path)
    assert r.notes == [f"read 3 rows from {path}, kept 3"]


def test_scale_is_kept_and_bounds_are_inclusive(tmp_path):
    r = read_ratings(write(tmp_path, HEADER + "1,1,1\n1,2,5\n1,3,4.1\n"), scale=(1, 4.1 + 0.9))
    assert r.scale == (1, 5.0)
    r = read_ratings(write(tmp_path, HEADER + "1,1,0.3\n"), scale=(0.1, np.float64(0.3)))
    assert len(r) == 1  # 0.3 is on the scale even though float32(0.3) > 0.3


def test_name_argument(tmp_path):
    assert read_ratings(write(tmp_path, HEADER + "1,1,1\n"), name="mine").name == "mine"


def test_blank_lines_are_skipped(tmp_path):
    r = read_ratings(write(tmp_path, HEADER + "1,1,1\n\n2,1,2\n\n"))
    assert r.frame["user"].tolist() == [1, 2]


def test_item_columns_become_item_metadata_keeping_every_value(tmp_path):
    text = "user,item,category,rating\n1,10,b,4\n2,10,a,3\n2,11,,5\n3,12, c ,2\n3,10,b,1\n"
    for source in (write(tmp_path, text), pd.read_csv(write(tmp_path, text, "b.csv"))):
        r = read_ratings(source, item_columns=["category"])
        assert list(r.frame.columns) == ["user", "item", "rating"] and len(r) == 5
        # every value an item is given, sorted; none (blank or missing) is an empty value
        assert r.items["category"].to_dict() == {10: "a|b", 11: "", 12: "c"}
        assert set(r.items.index) == set(r.frame["item"])
    assert read_ratings(write(tmp_path, text), item_columns=["category"]).origin["item_columns"] == "category"
    by_position = read_ratings(write(tmp_path, text.split("\n", 1)[1], "c.csv"), "0", "1", "3", names=(),
                               item_columns=["2"])  # fmt: skip
    assert by_position.items["2"].to_dict() == {10: "a|b", 11: "", 12: "c"}


def test_a_missing_item_column_is_named_with_the_columns_there_are(tmp_path):
    path = write(tmp_path, "user,item,category,rating\n1,10,b,4\n")
    assert_names(error(path, item_columns=["brand"]), str(path), "'brand'", "'category'")
    assert_names(error(pd.read_csv(path), item_columns=["brand"]), "DataFrame", "'brand'", "'category'")


# --- DataFrame and Parquet ----------------------------------------------------------------------
def test_dataframe_input():
    df = pd.DataFrame({"user": [1, 2], "item": ["a", "b"], "rating": [4, 5]})
    r = read_ratings(df)
    assert r.frame["user"].dtype == np.int64
    assert r.frame["item"].tolist() == ["a", "b"]
    assert r.frame["rating"].tolist() == [4.0, 5.0]
    assert r.name == "ratings"
    assert r.notes == ["read 2 rows from DataFrame, kept 2"]
    assert df["rating"].tolist() == [4, 5]  # the input is not modified


def test_dataframe_float_ids_that_are_whole_numbers_become_int64():
    r = read_ratings(pd.DataFrame({"user": [1.0, 2.0], "item": [3, 4], "rating": [1, 2]}))
    assert r.frame["user"].dtype == np.int64
    assert r.frame["user"].tolist() == [1, 2]


def test_dataframe_bad_rating_names_dataframe_row_and_column():
    df = pd.DataFrame({"user": [1, 2, 3], "item": [1, 1, 1], "rating": ["4", "5", "abc"]})
    msg = error(df)
    assert_names(msg, "DataFrame", "row 2", "'rating'", "not a number", "'abc'")


def test_dataframe_nan_rating():
    df = pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [4.0, np.nan]})
    msg = error(df)
    assert_names(msg, "DataFrame", "row 1", "'rating'", "missing")
    assert "np." not in msg  # values are shown plainly


def test_dataframe_missing_user():
    df = pd.DataFrame({"user": ["a", None], "item": [1, 1], "rating": [4.0, 3.0]})
    assert_names(error(df), "DataFrame", "row 1", "'user'", "user id is missing")


def test_dataframe_duplicates_name_rows():
    df = pd.DataFrame({"user": [1, 2, 1], "item": [5, 5, 5], "rating": [1, 2, 3]})
    msg = error(df)
    assert_names(msg, "DataFrame", "rows 0, 2", "user 1, item 5")
    assert "np.int64" not in msg


def test_dataframe_missing_column():
    df = pd.DataFrame({"user": [1], "movie": [1], "rating": [4.0]})
    assert_names(error(df), "DataFrame", "['item']", "['user', 'movie', 'rating']")


def test_parquet_input(tmp_path):
    path = tmp_path / "r.parquet"
    pd.DataFrame(
        {"user": ["u1", "u2"], "item": [10, 20], "rating": [4.5, 2.0], "ts": [100, 200]}
    ).to_parquet(path)
    r = read_ratings(path, timestamp_col="ts")
    assert r.frame["user"].tolist() == ["u1", "u2"]
    assert r.frame["item"].dtype == np.int32  # every id fits
    assert r.frame["rating"].tolist() == [4.5, 2.0]
    assert r.frame["timestamp"].tolist() == [100, 200]
    assert r.name == "r"


def test_parquet_bad_value_names_file_row_and_column(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"user": [1, 2, 3], "item": [1, 1, 1], "rating": [4.0, 9.0, 3.0]}).to_parquet(path)
    msg = error(str(path), scale=(1, 5))
    assert_names(msg, str(path), "row 1", "'rating'", "outside the scale", "9.0")


# --- bad input: files ---------------------------------------------------------------------------
def test_missing_columns_lists_the_actual_columns(tmp_path):
    path = write(tmp_path, "usr,item,score\n1,2,3\n")
    msg = error(path)
    assert_names(msg, str(path), "missing column", "'user'", "'rating'", "['usr', 'item', 'score']")


def test_missing_timestamp_column(tmp_path):
    path = write(tmp_path, HEADER + "1,2,3\n")
    assert_names(error(path, timestamp_col="ts"), str(path), "['ts']", "['user', 'item', 'rating']")


def test_non_numeric_rating(tmp_path):
    path = write(tmp_path, HEADER + "1,10,4\n1,11,abc\n")
    msg = error(path)
    assert_names(msg, str(path), "line 3", "column 'rating'", "not a number", "'abc'")
    assert "line 2" not in msg


def test_first_data_row_is_line_two(tmp_path):
    path = write(tmp_path, HEADER + "1,10,bad\n")
    assert_names(error(path), "line 2:")


@pytest.mark.parametrize("cell", ["", "  "])
def test_empty_rating_cell(tmp_path, cell):
    path = write(tmp_path, HEADER + "1,10,4\n2,10,3\n3,10," + cell + "\n")
    assert_names(error(path), str(path), "line 4", "column 'rating'", "rating is missing")


@pytest.mark.parametrize("value", ["NaN", "nan", "NA", "null"])
def test_nan_rating(tmp_path, value):
    path = write(tmp_path, HEADER + f"1,10,{value}\n")
    assert_names(error(path), str(path), "line 2", "column 'rating'", "not a number", repr(value))


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity"])
def test_infinite_rating(tmp_path, value):
    path = write(tmp_path, HEADER + "1,10,4\n" + f"1,11,{value}\n")
    assert_names(error(path), str(path), "line 3", "column 'rating'", "not finite", repr(value))


@pytest.mark.parametrize("value", ["0.5", "5.5", "-1", "100"])
def test_rating_outside_the_scale(tmp_path, value):
    path = write(tmp_path, HEADER + "1,10,1\n1,11,5\n" + f"2,10,{value}\n")
    msg = error(path, scale=(1, 5))
    assert_names(msg, str(path), "line 4", "column 'rating'", "outside the scale 1..5", repr(value))


def test_implicit_rating_outside_the_scale_is_reported(tmp_path):
    path = write(tmp_path, "user,item\n1,10\n")
    msg = error(path, rating_col=None, scale=(2, 5))
    assert_names(msg, str(path), "implicit", "rating 1", "outside the scale 2..5")


@pytest.mark.parametrize(
    ("row", "col", "key"),
    [(",10,4", "user", "user"), ("1,,4", "item", "item"), ("  ,10,4", "user", "user")],
)
def test_missing_id(tmp_path, row, col, key):
    path = write(tmp_path, HEADER + "1,10,4\n" + row + "\n")
    assert_names(error(path), str(path), "line 3", f"column '{col}'", f"{key} id is missing")


def test_missing_id_with_custom_column_name(tmp_path):
    path = write(tmp_path, "uid,item,rating\n,10,4\n")
    assert_names(error(path, user_col="uid"), "line 2", "column 'uid'", "user id is missing")


def test_bad_timestamp(tmp_path):
    path = write(tmp_path, "user,item,rating,ts\n1,2,3,2020-01-01\n1,3,4,yesterday\n")
    msg = error(path, timestamp_col="ts")
    assert_names(
        msg, str(path), "line 3", "column 'ts'", "neither a number nor a date", "'yesterday'"
    )
    assert "line 2" not in msg


def test_blank_timestamp_among_numbers_names_only_the_blank(tmp_path):
    path = write(tmp_path, "user,item,rating,ts\n1,2,3,100\n1,3,4,\n1,4,4,300\n")
    msg = error(path, timestamp_col="ts")
    assert_names(msg, str(path), "line 3", "column 'ts'")
    assert "line 2" not in msg and "line 4" not in msg  # the good numbers are not blamed


def test_infinite_timestamp(tmp_path):
    path = write(tmp_path, "user,item,rating,ts\n1,2,3,100\n1,3,4,inf\n")
    assert_names(error(path, timestamp_col="ts"), str(path), "line 3", "column 'ts'", "'inf'")


def test_line_numbers_count_blank_lines(tmp_path):
    path = write(tmp_path, "\n" + HEADER + "1,10,4\n\n\n1,11,x\n")
    assert_names(error(path), str(path), "line 6", "'x'")


def test_line_numbers_count_quoted_newlines(tmp_path):
    path = write(tmp_path, HEADER + '"multi\nline",10,4\n1,11,x\n')
    assert_names(error(path), "line 4", "'x'")


def test_many_bad_rows_are_summarised(tmp_path):
    path = write(tmp_path, HEADER + "".join(f"{u},1,x\n" for u in range(8)))
    msg = error(path)
    assert_names(msg, "line 2", "line 6", "(and 3 more)")
    assert "line 7" not in msg


def test_duplicates_are_an_error_naming_both_lines(tmp_path):
    path = write(tmp_path, HEADER + "1,10,4\n2,10,3\n1,10,5\n")
    msg = error(path)
    assert_names(msg, str(path), "user 1, item 10", "lines 2, 4", "duplicates='last'", "'mean'")


def test_duplicates_error_names_both_lines_even_when_far_apart(tmp_path):
    rows = (
        ["1,1,1"]
        + [f"{u},2,3" for u in range(2, 12)]
        + [f"{u},2,3" for u in range(2, 12)]
        + ["1,1,2"]
    )
    path = write(tmp_path, HEADER + "\n".join(rows) + "\n")
    msg = error(path)
    assert_names(msg, "user 1, item 1 at lines 2, 23", "(and 8 more pairs)")


def test_duplicates_last_keeps_the_last(tmp_path):
    path = write(tmp_path, HEADER + "1,10,4\n2,10,3\n1,10,5\n1,10,2\n")
    r = read_ratings(path, duplicates="last")
    got = dict(zip(zip(r.frame["user"], r.frame["item"]), r.frame["rating"]))
    assert got == {(1, 10): 2.0, (2, 10): 3.0}
    assert r.notes[0] == f"read 4 rows from {path}, kept 2"
    assert re.search(r"merged 2 duplicate .* by 'last'", r.notes[1])


def test_duplicates_mean_averages_and_keeps_the_newest_timestamp(tmp_path):
    text = "user,item,rating,ts\n1,10,4,100\n2,10,3,50\n1,10,5,300\n1,10,3,200\n"
    r = read_ratings(write(tmp_path, text), timestamp_col="ts", duplicates="mean")
    f = r.frame.set_index(["user", "item"])
    assert f.loc[(1, 10), "rating"] == pytest.approx(4.0)
    assert f.loc[(1, 10), "timestamp"] == 300
    assert f.loc[(2, 10), "rating"] == 3.0
    assert f.loc[(2, 10), "timestamp"] == 50
    assert r.frame["rating"].dtype == np.float32
    assert r.frame["timestamp"].dtype == np.int64
    assert len(r) == 2
    assert r.notes[0].endswith("kept 2")
    assert "merged 2 duplicate" in r.notes[1] and "'mean'" in r.notes[1]


def test_duplicates_mean_without_timestamps(tmp_path):
    r = read_ratings(write(tmp_path, HEADER + "1,10,1\n1,10,2\n"), duplicates="mean")
    assert r.frame["rating"].tolist() == [1.5]
    assert not r.has_timestamps


def test_unknown_duplicates_policy(tmp_path):
    with pytest.raises(ValueError, match="first"):
        read_ratings(write(tmp_path, HEADER + "1,10,1\n"), duplicates="first")


def test_empty_file(tmp_path):
    path = write(tmp_path, "")
    assert_names(error(path), str(path), "empty")


def test_whitespace_only_file(tmp_path):
    path = write(tmp_path, "\n\n  \n")
    assert_names(error(path), str(path), "empty")


def test_header_only_file(tmp_path):
    path = write(tmp_path, HEADER)
    assert_names(error(path), str(path), "no ratings", "header")


def test_empty_dataframe():
    assert_names(
        error(pd.DataFrame({"user": [], "item": [], "rating": []})), "DataFrame", "no ratings"
    )


def test_row_with_too_many_fields(tmp_path):
    path = write(tmp_path, HEADER + "1,10,4\n1,11,5\n1,12,5,extra\n")
    assert_names(error(path), str(path), "line 4", "malformed", "expected 3 fields, saw 4")


def test_row_with_too_many_fields_after_blank_lines(tmp_path):
    path = write(tmp_path, HEADER + "\n1,10,4\n\n1,12,5,extra\n")
    assert_names(error(path), "line 5", "expected 3 fields, saw 4")


def test_row_with_too_few_fields(tmp_path):
    path = write(tmp_path, HEADER + "1,10,4\n1,11\n")
    assert_names(error(path), str(path), "line 3", "column 'rating'", "missing")


def test_nonexistent_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        read_ratings(path)


def test_format_error_is_a_value_error():
    assert issubclass(RatingsFormatError, ValueError)


# --- nothing is dropped: property test ----------------------------------------------------------
str_id = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)
int_id = st.integers(-(10**12), 10**12)


@st.composite
def frames(draw):
    users = draw(
        st.one_of(
            st.lists(int_id, min_size=1, max_size=8, unique=True),
            st.lists(str_id, min_size=1, max_size=8, unique=True),
        )
    )
    items = draw(
        st.one_of(
            st.lists(int_id, min_size=1, max_size=8, unique=True),
            st.lists(str_id, min_size=1, max_size=8, unique=True),
        )
    )
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(users), st.sampled_from(items)),
            min_size=1,
            max_size=30,
            unique=True,
        )
    )
    n = len(pairs)
    ratings = draw(
        st.lists(
            st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=n, max_size=n
        )
    )
    stamps = draw(st.lists(st.integers(0, 4 * 10**9), min_size=n, max_size=n))
    return pd.DataFrame(
        {
            "user": [p[0] for p in pairs],
            "item": [p[1] for p in pairs],
            "rating": ratings,
            "ts": stamps,
        }
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.booleans())
def test_property_every_valid_row_is_kept_and_round_trips(df, via_csv):
    if via_csv:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "r.csv"
            df.to_csv(path, index=False)
            r = read_ratings(path, timestamp_col="ts")
    else:
        r = read_ratings(df, timestamp_col="ts")
    assert len(r) == len(df)
    assert r.notes[0].endswith(f"read {len(df)} rows from {r.source}, kept {len(df)}")
    f = r.frame
    assert f["user"].tolist() == df["user"].tolist()
    assert f["item"].tolist() == df["item"].tolist()
    for col in ("user", "item"):
        assert pd.api.types.is_integer_dtype(f[col].dtype) == pd.api.types.is_integer_dtype(df[col].dtype)
    np.testing.assert_array_equal(f["rating"].to_numpy(), df["rating"].to_numpy(np.float32))
    assert f["timestamp"].tolist() == df["ts"].tolist()


def test_duplicates_sum_counts_events_of_an_implicit_log(tmp_path):
    """An event log without ratings: 'sum' turns repeated (user, item) rows into counts."""
    text = "user,item\n1,10\n1,10\n2,10\n1,11\n1,10\n"
    r = read_ratings(write(tmp_path, text), rating_col=None, duplicates="sum")
    got = dict(zip(zip(r.frame["user"], r.frame["item"]), r.frame["rating"]))
    assert got == {(1, 10): 3.0, (2, 10): 1.0, (1, 11): 1.0}
    assert "merged 2 duplicate" in r.notes[1] and "'sum'" in r.notes[1]
