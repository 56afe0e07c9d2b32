"""Readers refuse what would become silently wrong numbers or eat the machine: clear errors, fast."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from collabkit.data.readers import RatingsFormatError, read_ratings


def _csv(tmp_path, text: str, name: str = "r.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_rating_finite_in_float64_but_not_float32_is_refused(tmp_path):
    path = _csv(tmp_path, "user,item,rating\n1,1,4\n2,1,1e39\n")
    with pytest.raises(RatingsFormatError, match=r"line 3.*not finite as a 32-bit float.*1e39"):
        read_ratings(path)


def test_largest_float32_rating_is_kept(tmp_path):
    path = _csv(tmp_path, "user,item,rating\n1,1,4\n2,1,3e38\n")
    assert np.isfinite(read_ratings(path).frame["rating"]).all()


def test_parquet_uint64_ids_that_would_wrap_are_refused(tmp_path):
    path = tmp_path / "r.parquet"
    ids = np.array([1, 2**63, 2**64 - 1], dtype=np.uint64)
    pd.DataFrame({"user": ids, "item": [1, 2, 3], "rating": [4.0, 3.0, 5.0]}).to_parquet(path)
    with pytest.raises(RatingsFormatError, match=r"'user'.*row 1.*64-bit"):
        read_ratings(path)


def test_parquet_small_uint64_ids_are_fine(tmp_path):
    path = tmp_path / "r.parquet"
    ids = np.array([1, 2, 2**63 - 1], dtype=np.uint64)
    pd.DataFrame({"user": ids, "item": [1, 2, 3], "rating": [4.0, 3.0, 5.0]}).to_parquet(path)
    assert read_ratings(path).frame["user"].max() == 2**63 - 1


@pytest.mark.parametrize("kind", ["bool", "object"])
def test_a_true_false_rating_is_refused_in_parquet_as_in_csv(tmp_path, kind):
    """pandas would read True as 1; a CSV's "true" is no number either, so both are refused."""
    path = tmp_path / "r.parquet"
    pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": pd.Series([True, False], dtype=kind)}).to_parquet(path)
    with pytest.raises(RatingsFormatError, match=r"'rating'.*row 0: rating is true/false, not a number"):
        read_ratings(path)
    csv = _csv(tmp_path, "user,item,rating\n1,1,true\n")
    with pytest.raises(RatingsFormatError, match="rating is not a number"):
        read_ratings(csv)


def test_a_directory_is_a_clear_error(tmp_path):
    (tmp_path / "ratings.csv").mkdir()
    with pytest.raises(RatingsFormatError, match="directory"):
        read_ratings(tmp_path / "ratings.csv")


def test_two_gigabytes_of_nul_bytes_fail_fast(tmp_path):
    path = tmp_path / "zeros.csv"
    with open(path, "wb") as fh:  # sparse: costs no disk
        fh.truncate(2 * 2**30)
    start = time.perf_counter()
    with pytest.raises(RatingsFormatError, match="binary"):
        read_ratings(path)
    assert time.perf_counter() - start < 2


def test_binary_garbage_fails_fast(tmp_path):
    path = tmp_path / "garbage.tsv"
    path.write_bytes(np.random.default_rng(0).bytes(1 << 20))
    with pytest.raises(RatingsFormatError, match="binary|UTF-8"):
        read_ratings(path)


def test_invalid_utf8_after_the_first_block_is_a_clear_error(tmp_path):
    path = tmp_path / "r.csv"
    rows = "".join(f"{u},1,4\n" for u in range(20000))
    path.write_bytes(b"user,item,rating\n" + rows.encode() + b"\xff\xfe,2,3\n")
    with pytest.raises(RatingsFormatError, match="UTF-8"):
        read_ratings(path)


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "r.parquet"
    path.write_bytes(b"user,item,rating\n1,1,4\n")
    with pytest.raises(RatingsFormatError, match="Parquet"):
        read_ratings(path)


def test_a_huge_field_is_refused_in_a_short_message(tmp_path, monkeypatch):
    """A field of 300 MB was refused with the field repeated whole (3.3 GB peak); the values an
    error quotes are cut short, and a row longer than a read block is refused before pandas
    reads it whole."""
    from collabkit.data import stream

    monkeypatch.setattr(stream, "CHUNK_BYTES", 1 << 16)
    rows = "".join(f"{u},{i},3\n" for u in range(1, 20) for i in range(1, 20))
    long_row = _csv(tmp_path, "user,item,rating\n" + rows + "1,2," + "x" * 200_000 + "\n")
    with pytest.raises(RatingsFormatError, match="a row longer than 0.0625 MiB") as caught:
        read_ratings(long_row)
    assert len(str(caught.value)) < 300
    long_field = _csv(tmp_path, "user,item,rating\n" + rows + "1,2," + "x" * 20_000 + "\n", "f.csv")
    with pytest.raises(RatingsFormatError, match="rating is not a number: 'xxx") as caught:
        read_ratings(long_field)
    assert "(19,920 more characters)" in str(caught.value) and len(str(caught.value)) < 400
