"""Fuzz the readers: random bytes, CSV-like text and Parquet schemas give a valid result or a
RatingsFormatError, never another exception, and never much memory."""

from __future__ import annotations

import resource
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collabkit.data.interactions import Ratings
from collabkit.data.readers import RatingsFormatError, read_ratings

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read(data: bytes, suffix: str, **kw) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"ratings{suffix}"
        path.write_bytes(data)
        try:
            out = read_ratings(path, **kw)
        except RatingsFormatError:
            return
        assert isinstance(out, Ratings) and len(out) > 0
        assert np.isfinite(out.frame["rating"].to_numpy()).all()


@FUZZ
@given(st.binary(max_size=2048), st.sampled_from([".csv", ".tsv", ".parquet", ".txt"]))
def test_random_bytes(data, suffix):
    _read(data, suffix)


@FUZZ
@given(st.binary(max_size=512), st.sampled_from([".csv", ".parquet"]))
def test_random_bytes_after_a_valid_header(data, suffix):
    _read(b"user,item,rating\n" if suffix == ".csv" else b"PAR1" + data, suffix)
    _read(b"user,item,rating\n1,2,3\n" + data, ".csv")


TOKENS = st.sampled_from(
    ["1", "2", "42", "-7", "3.5", "1e39", "1e3", "nan", "inf", "-inf", "", " ", "u1", "007",
     "9223372036854775808", "18446744073709551615", '"', '""', "'", "\\", "é", "\u2028", "\r", "0x10",
     "2024-01-01", "True", "None", "NA", "4.", ".5", "+3", "1_000"]
)  # fmt: skip


@st.composite
def csv_like(draw) -> str:
    sep = draw(st.sampled_from([",", "\t", ";"]))
    header = draw(st.sampled_from(["user,item,rating", "user,item", "user,item,rating,timestamp", "a,b,c", ""]))
    header = header.replace(",", sep)
    rows = draw(st.lists(st.lists(TOKENS, min_size=0, max_size=5), max_size=12))
    ends = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return header + ends + ends.join(sep.join(r) for r in rows)


@FUZZ
@given(csv_like(), st.sampled_from([".csv", ".tsv"]), st.sampled_from(["error", "last", "mean", "sum"]))
def test_csv_like_text(text, suffix, duplicates):
    _read(text.encode("utf-8"), suffix, duplicates=duplicates)
    _read(text.encode("utf-8"), suffix, timestamp_col="timestamp", scale=(1.0, 5.0))


ARROW_TYPES = {
    "int8": (pa.int8(), st.integers(-128, 127)),
    "int64": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "uint64": (pa.uint64(), st.integers(0, 2**64 - 1)),
    "float32": (pa.float32(), st.floats(width=32)),
    "float64": (pa.float64(), st.floats()),
    "string": (pa.string(), st.text(max_size=5)),
    "bool": (pa.bool_(), st.booleans()),
    "binary": (pa.binary(), st.binary(max_size=5)),
    "timestamp": (pa.timestamp("s"), st.integers(-(2**40), 2**40)),
    "list": (pa.list_(pa.int32()), st.lists(st.integers(-5, 5), max_size=3)),
    "null": (pa.null(), st.none()),
}


@st.composite
def parquet_table(draw) -> pa.Table:
    n = draw(st.integers(0, 8))
    names = draw(st.lists(st.sampled_from(["user", "item", "rating", "timestamp", "x"]), min_size=1, max_size=5, unique=True))
    columns = {}
    for name in names:
        kind = draw(st.sampled_from(sorted(ARROW_TYPES)))
        typ, values = ARROW_TYPES[kind]
        cells = draw(st.lists(st.one_of(st.none(), values) if kind != "null" else values, min_size=n, max_size=n))
        columns[name] = pa.array(cells, type=typ)
    return pa.table(columns)


@FUZZ
@given(parquet_table())
def test_random_parquet_schemas(table):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.parquet"
        pq.write_table(table, path)
        _read(path.read_bytes(), ".parquet")
        _read(path.read_bytes(), ".parquet", timestamp_col="timestamp")


@pytest.mark.parametrize("size", [64 << 20])
def test_memory_stays_bounded_on_a_large_hostile_file(tmp_path, size):
    """One long line of digits (no newline): refused from the first block, not parsed whole."""
    path = tmp_path / "r.csv"
    path.write_bytes(b"1" * size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(RatingsFormatError, match="header line"):
        read_ratings(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 32 << 10  # KiB: < 32 MB more
