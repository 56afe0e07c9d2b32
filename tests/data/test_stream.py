"""The chunked pyarrow reader: the same Ratings as the pandas reader, errors with their lines, compact memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from collabkit.data import readers, stream
from collabkit.data.readers import RatingsFormatError, read_ratings
from tests.conftest import peak_rss


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Chunks of a few rows; records which reader ran ("chunked", or "pandas" after NotPlain)."""
    monkeypatch.setattr(stream, "CHUNK_BYTES", 256)
    monkeypatch.setattr(stream, "CHUNK_ROWS", 7)
    ran: list[str] = []
    chunked, whole = stream.read_chunked, readers._read_file

    def spy_chunked(*a, **k):
        ran.append("chunked")
        return chunked(*a, **k)

    def spy_whole(*a, **k):
        ran.append("pandas")
        return whole(*a, **k)

    monkeypatch.setattr(stream, "read_chunked", spy_chunked)
    monkeypatch.setattr(readers, "_read_file", spy_whole)
    return ran


def pandas_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def off(*a, **k):
        raise stream.NotPlain("switched off")

    monkeypatch.setattr(stream, "read_chunked", off)


def both(monkeypatch: pytest.MonkeyPatch, ran: list[str], path: Path, **kw) -> tuple:
    """(chunked Ratings, pandas Ratings) of one file; the first must not have fallen back."""
    new = read_ratings(path, **kw)
    assert ran == ["chunked"], ran
    with monkeypatch.context() as m:
        pandas_only(m)
        old = read_ratings(path, **kw)
    return new, old


def assert_same(new, old) -> None:
    """Same rows, values and notes; integer ids may be narrower (int32)."""
    pd.testing.assert_frame_equal(new.frame, old.frame, check_dtype=False)
    for col in old.frame.columns:
        same_kind = pd.api.types.is_integer_dtype(old.frame[col].dtype)
        assert pd.api.types.is_integer_dtype(new.frame[col].dtype) == same_kind
        if not same_kind:
            assert new.frame[col].dtype == old.frame[col].dtype, col
    assert (new.notes, new.scale, new.name, new.source) == (old.notes, old.scale, old.name, old.source)


def ratings_text(n: int, user=lambda k: str(k % 13 + 1), item=lambda k: str(k * 7 % 31 + 100)) -> str:
    seen, rows = set(), []
    for k in range(n):
        if (user(k), item(k)) not in seen:
            seen.add((user(k), item(k)))
            rows.append(f"{user(k)},{item(k)},{k % 5 + 1}.5,{900000000 + k}\n")
    return "".join(rows)


@pytest.mark.parametrize(
    "ids",
    [
        {},  # integer ids
        {"user": lambda k: f"u{k % 11}", "item": lambda k: f" m{k % 17}"},  # text, spaces stripped
        {"user": lambda k: ["7", "007", "7.0"][k % 3]},  # "007" keeps every id a string
        {"item": lambda k: ["42", "42.0", "+3"][k % 3]},  # all integers: 42.0 is 42
    ],
)
def test_chunked_csv_equals_the_pandas_reader(tmp_path, monkeypatch, tiny_chunks, ids):
    body = ratings_text(200, **ids)
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating,ts\n" + body)
    new, old = both(monkeypatch, tiny_chunks, path, timestamp_col="ts", duplicates="mean")
    assert_same(new, old)
    assert len(new) > 20 and new.frame["rating"].dtype == np.float32


def test_chunked_headerless_and_positional_columns(tmp_path, monkeypatch, tiny_chunks):
    path = tmp_path / "r.tsv"
    path.write_text(ratings_text(100).replace(",", "\t"))
    new, old = both(monkeypatch, tiny_chunks, path, names=("user", "item", "rating", "ts"))
    assert_same(new, old)
    tiny_chunks.clear()
    new, old = both(monkeypatch, tiny_chunks, path, user_col="0", item_col="1", rating_col="2", names=())
    assert_same(new, old)


@pytest.mark.parametrize("user", [np.arange(60) % 9 + 1, np.array([f"u{k % 9}" for k in range(60)])])
def test_chunked_parquet_equals_the_pandas_reader(tmp_path, monkeypatch, tiny_chunks, user):
    path = tmp_path / "r.parquet"
    frame = pd.DataFrame({"u": user, "i": np.arange(60) * 3, "r": np.arange(60) % 5 + 1.0, "t": np.arange(60)})
    frame.to_parquet(path, row_group_size=9)
    new, old = both(monkeypatch, tiny_chunks, path, user_col="u", item_col="i", rating_col="r", timestamp_col="t")
    assert_same(new, old)


def test_implicit_interactions_chunked(tmp_path, monkeypatch, tiny_chunks):
    path = tmp_path / "clicks.csv"
    path.write_text("user,item\n" + "".join(f"{k % 7},{k}\n" for k in range(50)))
    new, old = both(monkeypatch, tiny_chunks, path, rating_col=None)
    assert_same(new, old)
    assert (new.frame["rating"] == 1).all()


# --- errors in a later chunk ------------------------------------------------------------------------
def test_a_bad_value_in_a_later_chunk_names_its_line(tmp_path, tiny_chunks):
    lines = [f"{k},{k % 5},{k % 5 + 1}\n" for k in range(300)]
    lines[250] = "250,0,lots\n"
    lines.insert(100, "\n")  # a blank line: the bad row is on line 253 (header, blank)
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n" + "".join(lines))
    with pytest.raises(RatingsFormatError) as err:
        read_ratings(path)
    assert str(err.value) == f"{path}: column 'rating': line 253: rating is not a number: 'lots'"
    assert tiny_chunks == ["chunked"]  # found by the chunk's own check, not by re-reading


def test_a_missing_id_and_an_out_of_scale_rating_in_later_chunks(tmp_path, tiny_chunks):
    rows = [f"{k},{k},3\n" for k in range(200)]
    rows[150] = ",150,3\n"
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n" + "".join(rows))
    with pytest.raises(RatingsFormatError, match=r"column 'user': line 152: user id is missing: ''"):
        read_ratings(path)
    rows[150], rows[170] = "150,150,3\n", "170,170,9\n"
    path.write_text("user,item,rating\n" + "".join(rows))
    with pytest.raises(RatingsFormatError, match=r"line 172: rating outside the scale 1.0..5.0: '9'"):
        read_ratings(path, scale=(1.0, 5.0))


def test_a_bad_parquet_row_in_a_later_batch_names_its_row(tmp_path, tiny_chunks):
    path = tmp_path / "r.parquet"
    rating = np.full(40, 3.0)
    rating[33] = np.inf
    pd.DataFrame({"user": np.arange(40), "item": np.arange(40), "rating": rating}).to_parquet(path)
    with pytest.raises(RatingsFormatError, match=r"column 'rating': row 33: rating is not finite: inf"):
        read_ratings(path)
    assert tiny_chunks == ["chunked"]


def test_a_malformed_row_is_reported_by_the_pandas_reader(tmp_path, tiny_chunks):
    rows = [f"{k},{k},3\n" for k in range(100)]
    rows[80] = "80,80,3,extra\n"
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n" + "".join(rows))
    with pytest.raises(RatingsFormatError, match="line 82: malformed row: expected 3 fields, saw 4"):
        read_ratings(path)
    assert tiny_chunks == ["chunked", "pandas"]


def test_dates_as_timestamps_fall_back_to_the_pandas_reader(tmp_path, monkeypatch, tiny_chunks):
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating,when\n" + "".join(f"{k},{k},3,2024-01-{k % 28 + 1:02d}\n" for k in range(40)))
    r = read_ratings(path, timestamp_col="when")
    assert tiny_chunks == ["chunked", "pandas"] and r.frame["timestamp"].iloc[0] == 1704067200


# --- duplicates across chunks -----------------------------------------------------------------------
def test_a_pair_repeated_across_chunks_is_an_error_naming_both_lines(tmp_path, tiny_chunks):
    rows = [f"{k},{k},3\n" for k in range(200)] + ["5,5,4\n"]
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating\n" + "".join(rows))
    with pytest.raises(RatingsFormatError, match=r"user 5, item 5 at lines 7, 202;"):
        read_ratings(path)


@pytest.mark.parametrize("policy", ["last", "mean", "sum"])
def test_duplicate_policies_across_chunks(tmp_path, monkeypatch, tiny_chunks, policy):
    rows = [f"{k % 20},{k % 30},{k % 5 + 1},{k}\n" for k in range(300)]
    path = tmp_path / "r.csv"
    path.write_text("user,item,rating,ts\n" + "".join(rows))
    new, old = both(monkeypatch, tiny_chunks, path, timestamp_col="ts", duplicates=policy)
    assert_same(new, old)
    assert len(new) == 60 and "merged 240 duplicate" in new.notes[1]


# --- memory -------------------------------------------------------------------------------------------
def test_reading_holds_12_bytes_a_rating(tmp_path):
    """2 M ratings: int32 ids, float32 ratings (12 bytes a rating) held; the peak while reading
    stays near that plus a chunk. The pandas reader peaks near 190 bytes a rating (text columns)."""
    n = 2_000_000
    rng = np.random.default_rng(0)
    key = np.unique(rng.integers(0, 200_000 * 90_000, int(n * 1.01)))[:n]
    path = tmp_path / "ratings.csv"
    table = pa.table({"userId": key // 90_000 + 1, "movieId": key % 90_000 + 1, "rating": rng.integers(1, 11, n) / 2})
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))
    del table, key
    data, peak = peak_rss(read_ratings, path, user_col="userId", item_col="movieId")
    assert len(data) == n
    assert data.frame.memory_usage(index=False).sum() == 12 * n
    assert peak < 24 * n + (160 << 20), peak / n  # a chunk's Arrow buffers are the constant
