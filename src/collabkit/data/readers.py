"""Read ratings from a DataFrame, CSV or Parquet file, validating every row (``checks``).

Files go through ``stream`` (pyarrow, a chunk at a time, compact columns); what it does not read
is read whole by pandas. Every problem is reported with the source, line (or row), column and
value; nothing is dropped silently.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from collabkit.data import stream
from collabkit.data.checks import (
    Duplicates,
    RatingsFormatError,
    as_ids,
    check_policy,
    offset_lines,
    validate,
)
from collabkit.data.interactions import Ratings
from collabkit.files import check_regular, clip_text, file_sha256

__all__ = ["RatingsFormatError", "item_table", "read_items", "read_ratings"]


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
    item_columns: Sequence[str] = (),
) -> Ratings:
    """Load and validate ratings; ``rating_col=None`` reads implicit interactions (rating 1).

    ``names``: the CSV has no header line; these are its columns, in order. ``names=()``: no
    header either, and the columns are called by position, "0", "1", ...
    ``item_columns``: columns that describe the item (a category, a brand), kept as its metadata
    (``Ratings.items``, ``item_table``) for the models that read metadata (``hybrid``, ``auto``).
    A file read with the default separator and scale is recorded (``Ratings.origin``: path,
    sha256, columns), so a model trained on it can read it again.
    """
    out = _read_ratings(source, user_col, item_col, rating_col, timestamp_col, scale, duplicates, sep, name, names)
    if item_columns:
        if isinstance(source, pd.DataFrame):
            raw, where = source, "DataFrame"
        else:
            raw, where = _read_file(Path(source), sep, names, usecols=[item_col, *item_columns]), str(source)
        out.items = item_table(raw, item_col, item_columns, where)
    if not isinstance(source, pd.DataFrame) and sep is None and scale is None:
        out.origin = {
            "ratings": str(Path(source).resolve()), "sha256": file_sha256(Path(source)),
            "user_col": user_col, "item_col": item_col, "rating_col": rating_col or "",
            "timestamp_col": timestamp_col, "duplicates": duplicates,
            "no_header": names is not None and not names or None,
            "names": ",".join(names) if names else None,
            "item_columns": ",".join(item_columns) or None,
        }  # fmt: skip
    return out


def item_table(raw: pd.DataFrame, item_col: str, columns: Sequence[str], where: str) -> pd.DataFrame:
    """One row per item of ``raw`` (its ids read as the ratings' are), a text column per name in
    ``columns``: the item's value, or its distinct values joined as "a|b" (sorted) when its rows
    disagree -- every value kept, in the multi-valued form the hybrid model reads. Missing or
    blank values are left out; an item with none has an empty value."""
    missing = [c for c in (item_col, *columns) if c not in raw.columns]
    if missing:
        raise _no_columns(where, missing, raw.columns, " for the item metadata")
    item_codes, item_ids = _codes(raw[item_col], as_ids)
    table = pd.DataFrame(index=pd.Index(item_ids, name="item"))
    for column in columns:
        codes, labels = _codes(raw[column], lambda u: u.astype(str).str.strip(), sort=True)
        labels = labels.to_numpy(dtype=object)
        given = codes >= 0
        given[given] = labels[codes[given]] != ""  # blank: no value
        keys = np.unique(item_codes[given] * len(labels) + codes[given])  # (item, value) pairs, sorted
        items, values = np.divmod(keys, max(1, len(labels)))
        out = np.full(len(item_ids), "", dtype=object)
        out[items] = labels[values]  # an item's one value (those with several are joined below)
        several = np.isin(items, items[1:][items[1:] == items[:-1]])
        if several.any():  # joined in Python only for these (all 296 k Epinions items: 5 s)
            joined = pd.Series(labels[values[several]]).groupby(items[several]).agg("|".join)
            out[joined.index.to_numpy()] = joined.to_numpy()
        table[str(column)] = out
    return table


def _codes(
    values: pd.Series, convert: Callable[[pd.Series], pd.Series], sort: bool = False
) -> tuple[np.ndarray, pd.Index]:
    """(codes (n,), distinct values): ``values`` factorized, ``convert`` applied to each distinct
    value once (distinct inputs that convert to one value share a code; ``sort``: codes in the
    converted values' order); -1 for missing."""
    if isinstance(values.dtype, pd.CategoricalDtype):  # codes already there
        codes, uniques = values.cat.codes.to_numpy(np.int64), values.cat.categories
    else:
        codes, uniques = pd.factorize(values)
    merged, distinct = pd.factorize(convert(pd.Series(uniques)), sort=sort)
    return np.where(codes >= 0, merged[np.maximum(codes, 0)], -1), pd.Index(distinct)


def _no_columns(where: str, missing: Sequence[Any], columns: Sequence[Any], purpose: str = "") -> RatingsFormatError:
    """One line: the columns ``where`` lacks (for ``purpose``) and the columns it has."""
    have = [str(c) for c in dict.fromkeys(columns)]
    return RatingsFormatError(f"{where}: no column(s) {clip_text(str(missing), 200)}{purpose}; "
                              f"the columns are {clip_text(str(have), 300)}")  # fmt: skip


def _read_ratings(
    source: str | Path | pd.DataFrame,
    user_col: str,
    item_col: str,
    rating_col: str | None,
    timestamp_col: str | None,
    scale: tuple[float, float] | None,
    duplicates: Duplicates,
    sep: str | None,
    name: str | None,
    names: Sequence[str] | None,
) -> Ratings:
    check_policy(duplicates)
    columns = {"user": user_col, "item": item_col, "rating": rating_col, "timestamp": timestamp_col}
    locate = None
    if isinstance(source, pd.DataFrame):
        raw, where, first_line, label = source, "DataFrame", 0, "row"
    else:
        path = Path(source)
        header = names is None
        where, label, first_line = str(source), "line", 2 if header else 1
        _check_names(names)
        if path.suffix == ".parquet":
            first_line, label = 0, "row"
            locate = partial(offset_lines, 0)
        else:  # blank lines and quoted newlines shift rows against lines: count them on error
            locate = partial(_csv_lines, path, _sep_for(path, sep), header=header)
        name = name or path.stem
        _check_file(path)
        if path.suffix != ".parquet":  # before Arrow: it would pick the first of two 'rating' columns
            _check_first_rows(path, sep, names)
        if path.suffix == ".parquet" or (path.suffix not in COMPRESSED and len(_sep_for(path, sep)) == 1):
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
        name=name or "ratings",
        locate=locate,
    )


def _sep_for(path: Path, sep: str | None) -> str:
    """The separator given, else by the suffix under any compression's: .tsv/.tab (also .tsv.gz) tab, else comma."""
    suffix = path.with_suffix("").suffix if path.suffix in COMPRESSED else path.suffix
    return sep or ("\t" if suffix in (".tsv", ".tab") else ",")


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


def _read_file(
    path: Path, sep: str | None, names: Sequence[str] | None = None, usecols: Sequence[str] | None = None
) -> pd.DataFrame:
    """The whole table as text columns; only ``usecols`` when given, each of them checked to exist."""
    if usecols is None:
        return _read_table(path, sep, names, None)
    wanted, header = list(dict.fromkeys(usecols)), []
    # a header names the columns to read (the filter sees each name); a header-less file is read
    # whole, then cut (pandas returns no rows for a column filter on it)
    keep = None if names is not None else (lambda c: header.append(c) or str(c) in wanted)
    frame = _read_table(path, sep, names, keep)
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise _no_columns(str(path), missing, header or frame.columns)
    return frame[wanted]


def _read_table(
    path: Path, sep: str | None, names: Sequence[str] | None, usecols: Callable[[Any], bool] | None
) -> pd.DataFrame:
    """The file read by pandas (every cell text), the columns ``usecols`` keeps if given."""
    _check_file(path)
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
            return frame[[c for c in frame.columns if usecols(c)]] if usecols else frame
        except (OSError, ValueError, TypeError, NotImplementedError) as e:  # pyarrow's errors derive from these
            raise RatingsFormatError(f"{path}: not a readable Parquet file ({str(e).strip()[:200]})") from None
    _check_first_rows(path, sep, names)
    headless = {} if names is None else {"header": None, "names": list(names) or None}
    frame = _csv(path, sep, usecols=usecols, **headless)
    frame.columns = [str(c) for c in frame.columns]  # position names 0, 1, ... as text
    return frame


def _csv(path: Path, sep: str | None, **options: Any) -> pd.DataFrame:
    """``pd.read_csv`` of ``path``, every cell text; its parser errors as one line naming the file."""
    try:
        return pd.read_csv(
            path, sep=_sep_for(path, sep), dtype=str, keep_default_na=False, skipinitialspace=True, **options
        )
    except pd.errors.ParserError as e:  # e.g. "Expected 3 fields in line 7, saw 4"
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if m:
            raise RatingsFormatError(
                f"{path}: line {m[2]}: malformed row: expected {m[1]} fields, saw {m[3]}"
            ) from None
        raise RatingsFormatError(f"{path}: malformed row: {clip_text(str(e).strip(), 300)}") from None
    except pd.errors.EmptyDataError:
        raise RatingsFormatError(f"{path}: the file is empty") from None
    except UnicodeDecodeError as e:
        raise RatingsFormatError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def _check_names(names: Sequence[str] | None) -> None:
    """Refuse a name given twice in ``names`` (--names): two columns cannot share it."""
    twice = _repeated(names or ())
    if twice is not None:
        raise RatingsFormatError(f"--names: {clip_text(repr(twice), 80)} is given twice")


def _check_first_rows(path: Path, sep: str | None, names: Sequence[str] | None) -> None:
    """Refuse a header naming a column twice, a first data row wider than the header, or a first
    row whose field count differs from ``names``: pandas would rename, index or shift the columns."""
    _check_separator(path, sep)
    first = _csv(path, sep, header=None, nrows=2)  # a data row wider than the header: "malformed row"
    if first.empty:
        return
    fields = [str(v) for v in first.iloc[0]]
    twice = _repeated(f for f in fields if f) if names is None else None  # blank names: "Unnamed: 3"
    if twice is None and (not names or len(fields) == len(names)):
        return
    line = _csv_lines(path, _sep_for(path, sep), [0], header=False)[0]
    if twice is not None:
        raise RatingsFormatError(f"{path}: line {line}: column {clip_text(repr(twice), 80)} appears twice")
    raise RatingsFormatError(f"{path}: line {line}: {len(fields)} fields but --names gives {len(names or ())} names")


_SEPARATORS = {"\t": "tabs", ",": "commas", ";": "semicolons"}
_RENAME = {"\t": ".tsv", ",": ".csv"}  # the suffix that reads each separator (none reads ';')


def _check_separator(path: Path, sep: str | None) -> None:
    """Refuse a text file whose first line is one field holding another separator (a tab file
    named .csv, a semicolon file): its columns would be reported missing, not its separator."""
    used = _sep_for(path, sep)
    if path.suffix in COMPRESSED or len(used) != 1:
        return
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        line, text = next(((n, t) for n, t in enumerate(fh, 1) if t.strip()), (0, ""))
    fields = next(csv.reader([text.rstrip("\r\n")], delimiter=used, skipinitialspace=True), [])
    if len(fields) != 1:
        return
    other = next((c for c in _SEPARATORS if c != used and c in fields[0]), None)
    if other is None:
        return
    if sep is not None:
        fix = f"it is read with sep={sep!r}; pass sep={other!r}"
    elif other in _RENAME:
        fix = f"the separator is chosen by the suffix (.csv: comma, .tsv: tab); rename the file to {_RENAME[other]}"
    else:
        fix = "only comma (.csv) and tab (.tsv) separated files are read; convert the file to one of them"
    raise RatingsFormatError(f"{path}: line {line}: 1 field, but the line holds {_SEPARATORS[other]}: {fix}")


def _repeated(values: Iterable[str]) -> str | None:
    """The first value seen a second time, or None."""
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


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
        raise RatingsFormatError(f"{path}: no column {clip_text(repr(id_col), 80)}; the columns are {clip_text(str(list(frame.columns)), 300)}")
    ids = as_ids(frame[id_col])
    repeated = ids[ids.duplicated()].unique()
    if len(repeated):
        raise RatingsFormatError(
            f"{path}: {len(repeated)} item id(s) appear more than once, e.g. "
            + clip_text(", ".join(repr(v.item() if hasattr(v, "item") else v) for v in repeated[:3]), 200)
        )
    table = frame.drop(columns=id_col).set_axis(pd.Index(ids, name="item"))
    if "title" not in table.columns and "name" in table.columns:
        table = table.rename(columns={"name": "title"})
    return table
