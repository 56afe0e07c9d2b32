"""Validate a raw ratings table row by row, and the rules every reader shares.

Every problem is reported with the source, line (or row), column and value; nothing is dropped
silently. Ids stay integers when every id is one (else text); duplicate (user, item) pairs are an
error unless a policy ("last", "mean" or "sum") is chosen.
"""

from __future__ import annotations

import datetime
import numbers
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
import pandas as pd

from collabkit.data.interactions import Ratings
from collabkit.files import clip_text

Duplicates = Literal["error", "last", "mean", "sum"]
POLICIES = ("error", "last", "mean", "sum")


class RatingsFormatError(ValueError):
    """Input ratings are malformed; the message names the source, line, column and problem."""

def check_policy(duplicates: str) -> None:
    if duplicates not in POLICIES:
        raise ValueError(f"unknown duplicates policy {duplicates!r}; use 'error', 'last', 'mean' or 'sum'")

def show(value: Any) -> str:
    """repr of a raw value, without numpy's 'np.int64(...)' wrapping, cut to a bounded length
    (a long text is cut before its repr is built: no copy of a 300 MB field)."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, str) and len(value) > 80:
        return f"{value[:80]!r}... ({len(value) - 80:,} more characters)"
    return clip_text(repr(value), 80)

SCALAR_KINDS = {"string", "integer", "floating", "mixed-integer-float", "boolean", "empty", "datetime", "date"}
_PLAIN = (str, numbers.Number, np.bool_, datetime.date)

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
    check_policy(duplicates)
    if locate is None:
        locate = partial(offset_lines, first_line)
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
    return finish(frame, duplicates, where, locate, label, scale, name)


def finish(
    frame: pd.DataFrame,
    duplicates: Duplicates,
    where: str,
    locate: Callable[[Sequence[int]], list[int]],
    label: str,
    scale: tuple[float, float] | None,
    name: str,
    repeats: bool = True,
) -> Ratings:
    """The Ratings of checked rows: repeated pairs merged or refused (``repeats=False``: there are
    none), and notes of what was read and kept."""
    n_read = len(frame)
    if repeats:
        frame = resolve_duplicates(frame, duplicates, where, locate, label)
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
            f"{label} {line}: {problem} {show(raw[col].iloc[p])}"
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
        if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) not in SCALAR_KINDS:
            odd = np.array([not (v is None or v is pd.NA or isinstance(v, _PLAIN)) for v in values])
            if odd.any():
                fail(odd, col, "not a plain value (text, number or date):")

    frame = pd.DataFrame(index=raw.index)
    for key in ("user", "item"):
        col = wanted[key]
        values = raw[col]
        blank = is_blank(values)
        if blank.any():
            fail(blank, col, f"{key} id is missing:")
        if pd.api.types.is_unsigned_integer_dtype(values.dtype):
            wraps = values.to_numpy(dtype=np.uint64) >= np.uint64(2**63)
            if wraps.any():
                fail(wraps, col, f"{key} id does not fit a 64-bit signed integer:")
        frame[key] = as_ids(values)

    if "rating" in wanted:
        col = wanted["rating"]
        values = raw[col]
        blank = is_blank(values)
        if blank.any():
            fail(blank, col, "rating is missing:")
        if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.infer_dtype(values, skipna=True) == "boolean":
            # pandas reads True as 1, where a CSV's "true" is no number: neither is taken as one
            fail(np.ones(len(values), dtype=bool), col, "rating is true/false, not a number:")
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


def is_blank(values: pd.Series) -> np.ndarray:
    """Missing (NaN/None) or, for text, empty after stripping."""
    blank = values.isna().to_numpy().copy()
    kind = values.dtype
    if not (pd.api.types.is_numeric_dtype(kind) or pd.api.types.is_bool_dtype(kind)):
        blank |= (values.astype(str).str.strip() == "").to_numpy()
    return blank


def offset_lines(first_line: int, positions: Sequence[int]) -> list[int]:
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


def as_ids(values: pd.Series) -> pd.Series:
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


def resolve_duplicates(
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
            shown.append(f"user {show(user)}, item {show(item)} at {label}s {lines}")
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
