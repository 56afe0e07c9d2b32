"""Read ratings from a DataFrame, CSV or Parquet file, validating every row.

Every problem is reported with the source, line (or row), column and value; nothing is dropped
silently. Duplicate (user, item) pairs are an error unless a policy ("last" or "mean") is chosen.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import numbers
import re
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from collabkit.data.interactions import Ratings
from collabkit.files import check_regular

Duplicates = Literal["error", "last", "mean", "sum"]
POLICIES = ("error", "last", "mean", "sum")


class RatingsFormatError(ValueError):
    """Input ratings are malformed; the message names the source, line, column and problem."""


def read_ratings(
    source: str | Path | pd.DataFrame,
    user_col: str = "user",
    item_col: str = "item",
    rating_col: str | None = "rating",
    timestamp_col: str | None = None,
    scale: tuple[float, float] | None = None,
    duplicates: Duplicates = "error",
    sep: str | None = None,
    name: str | None = None,
    names: Sequence[str] | None = None,
) -> Ratings:
    """Load and validate ratings; ``rating_col=None`` reads implicit interactions (rating 1).

    ``names``: the CSV has no header line; these are its columns, in order. ``names=()``: no
    header either, and the columns are called by position, "0", "1", ...
    """
    _check_policy(duplicates)
    columns = {"user": user_col, "item": item_col, "rating": rating_col, "timestamp": timestamp_col}
    locate = None
    if isinstance(source, pd.DataFrame):
        raw, where, first_line, label = source, "DataFrame", 0, "row"
    else:
        path = Path(source)
        header = names is None
        where, label, first_line = str(source), "line", 2 if header else 1
        if path.suffix == ".parquet":
            first_line, label = 0, "row"
            locate = partial(_offset_lines, 0)
        else:  # blank lines and quoted newlines shift rows against lines: count them on error
            locate = partial(_csv_lines, path, _sep_for(path, sep), header=header)
        name = name or path.stem
        _check_file(path)
        if path.suffix == ".parquet" or (path.suffix not in COMPRESSED and len(_sep_for(path, sep)) == 1):
            from collabkit.data import stream  # it builds on this module

            wanted = {k: v for k, v in columns.items() if v is not None}
            try:  # pyarrow, a chunk at a time, into compact columns
                return stream.read_chunked(
                    path, wanted, _sep_for(path, sep), names, where, label, locate, scale, duplicates, name
                )
            except stream.NotPlain:
                pass  # the general reader below handles it (or names the problem)
        raw = _read_file(path, sep, names)
    return validate(
        raw,
        columns,
        where=where,
        first_line=first_line,
        label=label,
        scale=scale,
        duplicates=duplicates,
        name=name or (Path(where).stem if where != "DataFrame" else "ratings"),
        locate=locate,
    )


def _check_policy(duplicates: str) -> None:
    if duplicates not in POLICIES:
        raise ValueError(f"unknown duplicates policy {duplicates!r}; use 'error', 'last', 'mean' or 'sum'")


def _sep_for(path: Path, sep: str | None) -> str:
    return sep or ("\t" if path.suffix in (".tsv", ".tab") else ",")


def _csv_lines(path: Path, sep: str, positions: Sequence[int], header: bool = True) -> list[int]:
    """File line numbers (1-based, header included) where the data rows at ``positions`` start.

    Mirrors pandas: blank lines are skipped and a quoted field may span lines. Falls back to
    ``position + 2`` when the file cannot be re-scanned the same way.
    """
    wanted = {int(p) for p in positions}
    found: dict[int, int] = {}
    if len(sep) == 1 and wanted:
        try:
            with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
                reader = csv.reader(fh, delimiter=sep, skipinitialspace=True)
                end, row = 0, -1 if header else 0  # row -1 is the header
                for record in reader:
                    start, end = end + 1, reader.line_num
                    if not record or (len(record) == 1 and not record[0].strip()):
                        continue
                    if row in wanted:
                        found[row] = start
                    row += 1
                    if row > max(wanted):
                        break
        except (OSError, csv.Error):
            pass
    return [found.get(int(p), int(p) + 1 + header) for p in positions]


def _show(value: Any) -> str:
    """repr of a raw value, without numpy's 'np.int64(...)' wrapping."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_file(path: Path) -> None:
    """A regular, non-empty file that does not start with binary data."""
    try:
        check_regular(path)
    except FileNotFoundError:
        raise
    except ValueError as e:
        raise RatingsFormatError(str(e)) from None
    if path.stat().st_size == 0:
        raise RatingsFormatError(f"{path}: the file is empty")
    _check_first_block(path)


def _read_file(path: Path, sep: str | None, names: Sequence[str] | None = None) -> pd.DataFrame:
    _check_file(path)
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError, TypeError, NotImplementedError) as e:  # pyarrow's errors derive from these
            raise RatingsFormatError(f"{path}: not a readable Parquet file ({str(e).strip()[:200]})") from None
    try:
        headless = {} if names is None else {"header": None, "names": list(names) or None}
        frame = pd.read_csv(
            path, sep=_sep_for(path, sep), dtype=str, keep_default_na=False,
            skipinitialspace=True, **headless,
        )  # fmt: skip
        frame.columns = [str(c) for c in frame.columns]  # position names 0, 1, ... as text
        return frame
    except pd.errors.ParserError as e:  # e.g. "Expected 3 fields in line 7, saw 4"
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if m:
            raise RatingsFormatError(
                f"{path}: line {m[2]}: malformed row: expected {m[1]} fields, saw {m[3]}"
            ) from None
        raise RatingsFormatError(f"{path}: malformed row: {str(e).strip()}") from None
    except pd.errors.EmptyDataError:
        raise RatingsFormatError(f"{path}: the file is empty") from None
    except UnicodeDecodeError as e:
        raise RatingsFormatError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


_SCALAR_KINDS = {"string", "integer", "floating", "mixed-integer-float", "boolean", "empty", "datetime", "date"}
_PLAIN = (str, numbers.Number, np.bool_, datetime.date)
FIRST_BLOCK = 1 << 16
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip")
_BINARY = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f]")  # control bytes no text table holds


def _check_first_block(path: Path) -> None:
    """Refuse binary data before a parser reads the whole file (a 2 GB file of NUL bytes fails here).

    Parquet must start with its magic bytes; text must be UTF-8 without control bytes, and its
    header line must end within the first 64 KiB.
    """
    with open(path, "rb") as fh:
        block = fh.read(FIRST_BLOCK)
    if path.suffix == ".parquet":
        if not block.startswith(b"PAR1"):
            raise RatingsFormatError(f"{path}: not a Parquet file (it does not start with PAR1)")
        return
    if path.suffix in COMPRESSED:
        return  # compressed text: pandas decompresses it while parsing
    bad = _BINARY.search(block)
    if bad:
        raise RatingsFormatError(
            f"{path}: binary data (byte {bad.group()!r} at offset {bad.start()}): not a CSV/TSV text file"
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(block, final=False)
    except UnicodeDecodeError as e:
        raise RatingsFormatError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    if len(block) == FIRST_BLOCK and b"\n" not in block and b"\r" not in block:
        raise RatingsFormatError(f"{path}: the header line is longer than {FIRST_BLOCK} bytes: not a ratings table")


def validate(
    raw: pd.DataFrame,
    columns: dict[str, str | None],
    where: str,
    first_line: int = 0,
    label: str = "row",
    scale: tuple[float, float] | None = None,
    duplicates: Duplicates = "error",
    name: str = "ratings",
    locate: Callable[[Sequence[int]], list[int]] | None = None,
) -> Ratings:
    """Turn a raw table into a validated Ratings; ``first_line`` is the line of the first data row.

    ``locate`` maps 0-based row positions to the numbers shown in messages (default
    ``first_line + position``).
    """
    _check_policy(duplicates)
    if locate is None:
        locate = partial(_offset_lines, first_line)
    if len(raw) == 0:
        raise RatingsFormatError(f"{where}: no ratings (the input has a header but no rows)")
    wanted = {k: v for k, v in columns.items() if v is not None}
    missing = [v for v in wanted.values() if v not in raw.columns]
    if missing:
        raise RatingsFormatError(
            f"{where}: missing column(s) {missing}; the columns are {list(map(str, raw.columns))}"
        )

    check_implicit_scale(where, wanted, scale)
    frame = convert(raw, wanted, failer(raw, where, label, locate), scale)
    n_read = len(frame)
    frame = _resolve_duplicates(frame, duplicates, where, locate, label)
    out = Ratings(frame.reset_index(drop=True), scale=scale, name=name, source=where)
    out.notes.append(f"read {n_read} rows from {where}, kept {len(out)}")
    if len(out) != n_read:
        out.notes.append(f"merged {n_read - len(out)} duplicate (user, item) rows by '{duplicates}'")
    return out


def check_implicit_scale(where: str, wanted: dict[str, str], scale: tuple[float, float] | None) -> None:
    """Implicit interactions (no rating column) have rating 1, which the scale must hold."""
    if "rating" not in wanted and scale is not None and not scale[0] <= 1 <= scale[1]:
        raise RatingsFormatError(
            f"{where}: implicit interactions have rating 1, outside the scale {scale[0]}..{scale[1]}"
        )


def failer(
    raw: pd.DataFrame, where: str, label: str, locate: Callable[[Sequence[int]], list[int]]
) -> Callable[[np.ndarray, str, str], None]:
    """``fail(mask, col, problem)``: raise naming the first rows of ``raw`` where ``mask`` holds."""

    def fail(mask: np.ndarray, col: str, problem: str) -> None:
        pos = np.flatnonzero(mask)
        shown = ", ".join(
            f"{label} {line}: {problem} {_show(raw[col].iloc[p])}"
            for p, line in zip(pos[:5], locate(pos[:5]))
        )
        more = f" (and {len(pos) - 5} more)" if len(pos) > 5 else ""
        raise RatingsFormatError(f"{where}: column {col!r}: {shown}{more}")

    return fail


def convert(
    raw: pd.DataFrame,
    wanted: dict[str, str],
    fail: Callable[[np.ndarray, str, str], None],
    scale: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """Check every row of ``raw``'s ``wanted`` columns and convert them: ids, float32 ratings, timestamps."""
    for col in wanted.values():  # Parquet/DataFrame cells can be bytes, lists, dicts...
        values = raw[col]
        if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) not in _SCALAR_KINDS:
            odd = np.array([not (v is None or v is pd.NA or isinstance(v, _PLAIN)) for v in values])
            if odd.any():
                fail(odd, col, "not a plain value (text, number or date):")

    frame = pd.DataFrame(index=raw.index)
    for key in ("user", "item"):
        col = wanted[key]
        values = raw[col]
        blank = _blank(values)
        if blank.any():
            fail(blank, col, f"{key} id is missing:")
        if pd.api.types.is_unsigned_integer_dtype(values.dtype):
            wraps = values.to_numpy(dtype=np.uint64) >= np.uint64(2**63)
            if wraps.any():
                fail(wraps, col, f"{key} id does not fit a 64-bit signed integer:")
        frame[key] = _as_ids(values)

    if "rating" in wanted:
        col = wanted["rating"]
        values = raw[col]
        blank = _blank(values)
        if blank.any():
            fail(blank, col, "rating is missing:")
        rating = pd.to_numeric(values, errors="coerce")
        bad = rating.isna().to_numpy()
        if bad.any():
            fail(bad, col, "rating is not a number:")
        r = rating.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(r)
        if bad.any():
            fail(bad, col, "rating is not finite:")
        with np.errstate(over="ignore"):
            bad = ~np.isfinite(r.astype(np.float32))  # 1e39 is finite in float64, inf in float32
        if bad.any():
            fail(bad, col, "rating is not finite as a 32-bit float:")
    else:
        r = np.ones(len(raw))
    if scale is not None and "rating" in wanted:  # before the float32 cast: 4.1 on ..4.1 is in
        lo, hi = scale
        bad = (r < lo) | (r > hi)
        if bad.any():
            fail(bad, wanted["rating"], f"rating outside the scale {lo}..{hi}:")
    frame["rating"] = r.astype(np.float32)

    if "timestamp" in wanted:
        col = wanted["timestamp"]
        frame["timestamp"] = _timestamps(raw[col], lambda mask, problem: fail(mask, col, problem))

    return frame


def _blank(values: pd.Series) -> np.ndarray:
    """Missing (NaN/None) or, for text, empty after stripping."""
    blank = values.isna().to_numpy().copy()
    kind = values.dtype
    if not (pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind)):
        blank |= (values.astype(str).str.strip() == "").to_numpy()
    return blank


def _offset_lines(first_line: int, positions: Sequence[int]) -> list[int]:
    return [first_line + int(p) for p in positions]


def _timestamps(values: pd.Series, fail: Callable[[np.ndarray, str], None]) -> np.ndarray:
    """Epoch seconds (numbers) or dates (ISO 8601 or anything pandas parses; naive means UTC)."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        dates = pd.to_datetime(values, utc=True)
    else:
        num = pd.to_numeric(values, errors="coerce")
        is_num = num.notna().to_numpy()
        dates = None
        if not is_num.all():
            dates = _parse_dates(values)
            if not dates[~is_num].notna().any():  # no value is a date: it is a column of numbers
                dates = None
        if dates is None:
            if not is_num.all():
                fail(~is_num, "timestamp is neither a number nor a date:")
            ts = num.to_numpy(dtype=np.float64)
            bad = ~np.isfinite(ts) | (np.abs(ts) >= 2.0**63)
            if bad.any():
                fail(bad, "timestamp is not a finite number:")
            return ts.astype(np.int64)
    bad = dates.isna().to_numpy()
    if bad.any():
        fail(bad, "timestamp is neither a number nor a date:")
    return ((dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def _parse_dates(values: pd.Series) -> pd.Series:
    dates = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    if dates.isna().any():  # other formats, or ISO mixed with others: element by element
        dates = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    return dates


_INT_TEXT = r"[+-]?(?:0|[1-9][0-9]{0,17})(?:\.0*)?"


def _as_ids(values: pd.Series) -> pd.Series:
    """Ids stay integers when every value is an integer, else become strings.

    Text counts as an integer only in canonical form ("42", "-7", "42.0"): "007" or "1e3" stay
    strings so distinct ids never collapse into one.
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype(str)
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype(np.int64)
    if pd.api.types.is_float_dtype(values.dtype):
        v = values.to_numpy(dtype=np.float64)
        if (np.isfinite(v) & (v == np.floor(v)) & (np.abs(v) < 2.0**53)).all():
            return values.astype(np.int64)
        return values.astype(str)
    text = values.astype(str).str.strip()
    if text.str.fullmatch(_INT_TEXT).all():
        return text.str.replace(r"\.0*$", "", regex=True).astype(np.int64)
    return text


def _resolve_duplicates(
    frame: pd.DataFrame,
    policy: Duplicates,
    where: str,
    locate: Callable[[Sequence[int]], list[int]],
    label: str,
) -> pd.DataFrame:
    dup = frame.duplicated(["user", "item"], keep=False).to_numpy()
    if not dup.any():
        return frame
    if policy == "error":
        pos = np.flatnonzero(dup)
        pair = frame.iloc[pos].groupby(["user", "item"], sort=False).ngroup().to_numpy()
        shown = []
        for g in range(min(3, int(pair.max()) + 1)):  # the first pairs, each with all its lines
            rows = pos[pair == g]
            lines = ", ".join(map(str, locate(rows[:4]))) + (", ..." if len(rows) > 4 else "")
            user, item = frame["user"].iloc[rows[0]], frame["item"].iloc[rows[0]]
            shown.append(f"user {_show(user)}, item {_show(item)} at {label}s {lines}")
        extra = int(pair.max()) - 2
        more = f" (and {extra} more pair{'s' if extra > 1 else ''})" if extra > 0 else ""
        raise RatingsFormatError(
            f"{where}: {len(pos)} rows repeat a (user, item) pair: {'; '.join(shown)}{more}; "
            "pass duplicates='last', 'mean' or 'sum' (--duplicates) to merge them"
        )
    if policy == "last":
        return frame.drop_duplicates(["user", "item"], keep="last")
    if policy in ("mean", "sum"):  # sum: event logs, e.g. clicks without ratings -> click counts
        agg = {"rating": policy}
        if "timestamp" in frame.columns:
            agg["timestamp"] = "max"
        out = frame.groupby(["user", "item"], as_index=False, sort=False).agg(agg)
        out["rating"] = out["rating"].astype(np.float32)
        return out
    raise ValueError(f"unknown duplicates policy {policy!r}; use 'error', 'last', 'mean' or 'sum'")


def read_items(path: str | Path, id_col: str | None = None, sep: str | None = None) -> pd.DataFrame:
    """Item names and metadata from a CSV/TSV/Parquet file: one row per item, indexed by its id.

    The id is ``id_col`` (default: the first column); a ``name`` column is taken as the title when
    there is no ``title``. Repeated ids are an error naming them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    frame = _read_file(path, sep)
    id_col = id_col if id_col is not None else str(frame.columns[0])
    if id_col not in frame.columns:
        raise RatingsFormatError(f"{path}: no column {id_col!r}; the columns are {list(frame.columns)}")
    ids = _as_ids(frame[id_col])
    repeated = ids[ids.duplicated()].unique()
    if len(repeated):
        raise RatingsFormatError(
            f"{path}: {len(repeated)} item id(s) appear more than once, e.g. {list(repeated[:3])}"
        )
    table = frame.drop(columns=id_col).set_axis(pd.Index(ids, name="item"))
    if "title" not in table.columns and "name" in table.columns:
        table = table.rename(columns={"name": "title"})
    return table
