"""Read large CSV/Parquet ratings with pyarrow a chunk at a time, straight into compact columns.

Ids are dictionary-encoded chunk by chunk (int32 codes + each distinct raw id once), so the id
rules of ``checks`` run on the distinct ids, never on every row; ratings become float32 and
timestamps int64. Integer ids end as int32 columns when they fit, text ids as Arrow strings:
no per-row Python object is ever made. A chunk failing a vectorised check is re-checked row by
row by ``checks.convert``, which raises naming the line. Whatever this path does not read
(rows Arrow cannot parse, dates as timestamps, a valid but unusual value...) raises
``NotPlain`` and ``read_ratings`` reads the file with pandas as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from collabkit.data import checks
from collabkit.data.interactions import Ratings, pair_keys

#: CSV bytes parsed at a time (about 330 k MovieLens rows; Arrow reads up to 32 blocks ahead)
#: and Parquet rows a batch
CHUNK_BYTES = 8 << 20
CHUNK_ROWS = 1 << 20
ARROW_ERRORS = (pa.ArrowException, OSError, ValueError, KeyError, TypeError, NotImplementedError)
INT32 = np.iinfo(np.int32)


class NotPlain(Exception):
    """The file needs the general (pandas) reader."""


class _Flagged(Exception):
    """A chunk holds a value the vectorised checks refuse; re-check it row by row."""


def read_chunked(
    path: Path,
    wanted: dict[str, str],
    sep: str,
    names: Sequence[str] | None,
    where: str,
    label: str,
    locate: Callable[[Sequence[int]], list[int]],
    scale: tuple[float, float] | None,
    duplicates: checks.Duplicates,
    name: str,
) -> Ratings:
    """Ratings from a CSV/TSV or Parquet file; ``locate`` maps row positions to line numbers."""
    checks.check_implicit_scale(where, wanted, scale)
    ids = {"user": _Ids(), "item": _Ids()}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "item", "rating", *wanted)}
    n = 0
    for batch in _batches(path, sep, names, list(wanted.values())):
        try:
            codes = {k: ids[k].add(batch.column(wanted[k])) for k in ids}
            rating = _ratings(batch.column(wanted["rating"]), scale) if "rating" in wanted else None
            stamps = _timestamps(batch.column(wanted["timestamp"])) if "timestamp" in wanted else None
        except _Flagged:  # this chunk only, row by row: raises naming the line
            raw = batch.to_pandas()
            at = _at_offset(locate, n)
            checks.convert(raw, wanted, checks.failer(raw, where, label, at), scale)
            raise NotPlain(f"chunk at row {n} is valid but not plain") from None
        for k, v in codes.items():
            parts[k].append(v)
        parts["rating"].append(rating if rating is not None else np.ones(batch.num_rows, np.float32))
        if stamps is not None:
            parts["timestamp"].append(stamps)
        n += batch.num_rows
        pa.default_memory_pool().release_unused()  # the chunk's Arrow buffers, back to the system
    if n == 0:
        raise NotPlain("no rows")  # the pandas reader names the problem (no rows, no header...)
    frame, repeats = _frame(ids, parts)
    pa.default_memory_pool().release_unused()
    return checks.finish(frame, duplicates, where, locate, label, scale, name, repeats=repeats)


def _at_offset(locate: Callable[[Sequence[int]], list[int]], offset: int) -> Callable[[Sequence[int]], list[int]]:
    """``locate`` for a chunk whose first row is row ``offset`` of the file."""
    return lambda positions: locate([offset + int(p) for p in positions])


class _Ids:
    """The distinct raw ids seen so far (each kept once) and, per chunk, rows as int32 codes into them."""

    def __init__(self) -> None:
        self.seen: pd.Index | None = None

    def add(self, column: pa.Array) -> np.ndarray:
        """int32 codes of a chunk's ids into ``seen``, which grows by the ids it had not held."""
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        try:
            encoded = pc.dictionary_encode(column)
        except ARROW_ERRORS:
            raise _Flagged from None  # lists, structs...: the row check names them
        local = pd.Index(encoded.dictionary.to_pandas())
        if encoded.indices.null_count or _id_problem(local):
            raise _Flagged
        if self.seen is None:
            self.seen, remap = local, np.arange(len(local), dtype=np.int32)
        else:
            remap = self.seen.get_indexer(local).astype(np.int32)
            new = remap < 0
            remap[new] = np.arange(len(self.seen), len(self.seen) + int(new.sum()), dtype=np.int32)
            self.seen = self.seen.append(local[new])
        return remap[encoded.indices.to_numpy(zero_copy_only=False)]

    def finish(self, codes: np.ndarray) -> tuple[pd.Series, np.ndarray]:
        """(distinct ids after ``checks.as_ids``, each row's code into them).

        The id rules run once per distinct raw id: " 42" and "42" become one id 42, "007" stays
        text. Integer ids become int32 when they fit.
        """
        ids = checks.as_ids(pd.Series(self.seen))
        canon, values = pd.factorize(ids)  # " 42" and "42" are one id
        if len(values) < len(ids):
            codes = canon.astype(np.int32)[codes]
        values = pd.Series(values)
        if pd.api.types.is_integer_dtype(values.dtype) and (
            len(values) == 0 or (values.min() >= INT32.min and values.max() <= INT32.max)
        ):
            values = values.astype(np.int32)
        return values, codes


def _id_problem(values: pd.Index) -> bool:
    """Would ``checks.convert`` refuse one of these distinct ids (missing, odd type, > int64)?"""
    series = pd.Series(values)
    if series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) not in checks.SCALAR_KINDS:
        return True
    if pd.api.types.is_unsigned_integer_dtype(series.dtype) and len(series) and series.max() >= 2**63:
        return True
    return bool(checks.is_blank(series).any())


def _ratings(column: pa.Array, scale: tuple[float, float] | None) -> np.ndarray:
    """float32 ratings; raises _Flagged on a missing, non-numeric, non-finite or out-of-scale one."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.utf8_trim_whitespace(column)
    elif not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise _Flagged
    try:
        r = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    except ARROW_ERRORS:
        raise _Flagged from None
    if column.null_count or not np.isfinite(r).all() or (np.abs(r) > np.finfo(np.float32).max).any():
        raise _Flagged
    if scale is not None and ((r < scale[0]) | (r > scale[1])).any():
        raise _Flagged  # before the float32 cast, as checks.convert does
    return r.astype(np.float32)


def _timestamps(column: pa.Array) -> np.ndarray:
    """int64 epoch seconds from integers (as numbers or text); anything else is _Flagged."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = pc.utf8_trim_whitespace(column)
    elif not pa.types.is_integer(column.type):
        raise _Flagged  # dates, floats: checks.convert decides
    try:
        out = pc.cast(column, pa.int64())
    except ARROW_ERRORS:
        raise _Flagged from None
    if out.null_count:
        raise _Flagged
    return out.to_numpy(zero_copy_only=False)


def _batches(path: Path, sep: str, names: Sequence[str] | None, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The file's ``columns``, a chunk at a time; NotPlain for what Arrow cannot read as pandas would."""
    try:
        if path.suffix == ".parquet":
            reader = pq.ParquetFile(path)
            if any(c not in reader.schema_arrow.names for c in columns):
                raise NotPlain("missing columns")
            yield from reader.iter_batches(batch_size=CHUNK_ROWS, columns=columns)
            return
        rename = {f"f{c}": c for c in columns} if names is not None and not names else {}
        stream = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                block_size=CHUNK_BYTES, column_names=list(names) if names else None,
                autogenerate_column_names=rename != {},
            ),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(rename) or columns,
                column_types=dict.fromkeys(list(rename) or columns, pa.string()),
            ),
        )  # fmt: skip
        if names is None and len(set(stream.schema.names)) < len(stream.schema.names):
            raise NotPlain("repeated column names")  # pandas renames them a, a.1
        for batch in stream:
            yield batch.rename_columns([rename.get(c, c) for c in batch.schema.names])
    except ARROW_ERRORS as e:  # malformed rows, bad UTF-8, missing columns: pandas names them
        if "straddles two block boundaries" in str(e):  # a row of over CHUNK_BYTES: no ratings row
            raise checks.RatingsFormatError(
                f"{path}: a row longer than {CHUNK_BYTES / 2**20:g} MiB (a field of that size?): not a ratings table"
            ) from None
        raise NotPlain(str(e)) from None


def _frame(ids: dict[str, _Ids], parts: dict[str, list[np.ndarray]]) -> tuple[pd.DataFrame, bool]:
    """(the columns joined, whether a (user, item) pair repeats); chunks are freed as joined."""
    coded = {k: ids[k].finish(_join(parts[k])) for k in ids}
    repeats = _repeats(coded["user"][1], coded["item"][1])
    columns = {}
    for key in ("user", "item", "rating", "timestamp"):
        if key in coded:
            values, codes = coded.pop(key)
            columns[key] = _take(values, codes)  # int32, or Arrow strings
        elif key in parts:
            columns[key] = _join(parts[key])
    return pd.DataFrame(columns, copy=False), repeats


def _take(values: pd.Series, codes: np.ndarray) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """``values[codes]`` a slice at a time: numpy widens int32 indices to int64 (8 bytes a row)."""
    if not isinstance(values.dtype, np.dtype):
        return values.array.take(codes)  # Arrow strings take int32 indices as they are
    source, out = values.to_numpy(), np.empty(len(codes), values.dtype)
    for start in range(0, len(codes), CHUNK_ROWS):
        np.take(source, codes[start : start + CHUNK_ROWS], out=out[start : start + CHUNK_ROWS])
    return out


def _join(chunks: list[np.ndarray]) -> np.ndarray:
    out = np.concatenate(chunks)
    chunks.clear()
    return out


def _repeats(users: np.ndarray, items: np.ndarray) -> bool:
    """Does a (user, item) pair repeat? Sorts ``pair_keys`` instead of hashing two columns."""
    key = pair_keys(users, items, int(items.max()) + 1)
    key.sort()
    return bool((key[1:] == key[:-1]).any())
