"""Read ratings from a DataFrame, CSV or Parquet file, validating every row.

Every problem is reported with the source, line (or row), column and value; nothing is dropped
silently. Duplicate (user, item) pairs are an error unless a policy ("last" or "mean") is chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from collabkit.data.interactions import Ratings

Duplicates = Literal["error", "last", "mean"]


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
) -> Ratings:
    """Load and validate ratings; ``rating_col=None`` reads implicit interactions (rating 1)."""
    if isinstance(source, pd.DataFrame):
        raw, where, first_line, label = source, "DataFrame", 0, "row"
    else:
        raw, where, first_line, label = _read_file(Path(source), sep), str(source), 2, "line"
        if str(source).endswith(".parquet"):
            first_line, label = 0, "row"
    return validate(
        raw,
        {"user": user_col, "item": item_col, "rating": rating_col, "timestamp": timestamp_col},
        where=where,
        first_line=first_line,
        label=label,
        scale=scale,
        duplicates=duplicates,
        name=name or (Path(where).stem if where != "DataFrame" else "ratings"),
    )


def _read_file(path: Path, sep: str | None) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise RatingsFormatError(f"{path}: the file is empty")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    sep = sep or ("\t" if path.suffix in (".tsv", ".tab") else ",")
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.ParserError as e:  # e.g. "Expected 3 fields in line 7, saw 4"
        raise RatingsFormatError(f"{path}: malformed row: {e}") from None
    except pd.errors.EmptyDataError:
        raise RatingsFormatError(f"{path}: the file is empty") from None


def validate(
    raw: pd.DataFrame,
    columns: dict[str, str | None],
    where: str,
    first_line: int = 0,
    label: str = "row",
    scale: tuple[float, float] | None = None,
    duplicates: Duplicates = "error",
    name: str = "ratings",
) -> Ratings:
    """Turn a raw table into a validated Ratings; ``first_line`` is the line of the first data row."""
    if len(raw) == 0:
        raise RatingsFormatError(f"{where}: no ratings (the input has a header but no rows)")
    wanted = {k: v for k, v in columns.items() if v is not None}
    missing = [v for v in wanted.values() if v not in raw.columns]
    if missing:
        raise RatingsFormatError(
            f"{where}: missing column(s) {missing}; the columns are {list(map(str, raw.columns))}"
        )

    def fail(mask: np.ndarray, col: str, problem: str) -> None:
        pos = np.flatnonzero(mask)
        shown = ", ".join(
            f"{label} {first_line + p}: {problem} {raw[col].iloc[p]!r}" for p in pos[:5]
        )
        more = f" (and {len(pos) - 5} more)" if len(pos) > 5 else ""
        raise RatingsFormatError(f"{where}: column {col!r}: {shown}{more}")

    frame = pd.DataFrame(index=raw.index)
    for key in ("user", "item"):
        col = wanted[key]
        values = raw[col]
        blank = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
        if blank.any():
            fail(blank, col, f"missing {key} id")
        frame[key] = _as_ids(values)

    if "rating" in wanted:
        col = wanted["rating"]
        rating = pd.to_numeric(raw[col], errors="coerce")
        bad = rating.isna().to_numpy()
        if bad.any():
            fail(bad, col, "rating is not a number:")
        bad = ~np.isfinite(rating.to_numpy(dtype=float))
        if bad.any():
            fail(bad, col, "rating is not finite:")
        frame["rating"] = rating.astype(np.float32)
    else:
        frame["rating"] = np.float32(1.0)
    if scale is not None:
        lo, hi = scale
        r = frame["rating"].to_numpy()
        bad = (r < lo) | (r > hi)
        if bad.any():
            fail(bad, wanted.get("rating", "rating"), f"rating outside the scale {lo}..{hi}:")

    if "timestamp" in wanted:
        col = wanted["timestamp"]
        ts = pd.to_numeric(raw[col], errors="coerce")
        if ts.isna().any():  # not epoch seconds: try dates
            dates = pd.to_datetime(raw[col], errors="coerce", utc=True)
            bad = dates.isna().to_numpy()
            if bad.any():
                fail(bad, col, "timestamp is neither a number nor a date:")
            ts = (dates - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        frame["timestamp"] = ts.astype(np.int64)

    n_read = len(frame)
    frame = _resolve_duplicates(frame, duplicates, where, first_line, label)
    out = Ratings(frame.reset_index(drop=True), scale=scale, name=name, source=where)
    out.notes.append(f"read {n_read} rows from {where}, kept {len(out)}")
    if len(out) != n_read:
        out.notes.append(f"merged {n_read - len(out)} duplicate (user, item) rows by '{duplicates}'")
    return out


def _as_ids(values: pd.Series) -> pd.Series:
    """Ids stay integers when every value is an integer, else become strings."""
    num = pd.to_numeric(values, errors="coerce")
    if num.notna().all() and (num == np.floor(num)).all():
        return num.astype(np.int64)
    return values.astype(str).str.strip()


def _resolve_duplicates(
    frame: pd.DataFrame, policy: Duplicates, where: str, first_line: int, label: str
) -> pd.DataFrame:
    dup = frame.duplicated(["user", "item"], keep=False).to_numpy()
    if not dup.any():
        return frame
    if policy == "error":
        pos = np.flatnonzero(dup)[:6]
        shown = ", ".join(
            f"{label} {first_line + p} (user {frame['user'].iloc[p]!r}, item {frame['item'].iloc[p]!r})"
            for p in pos
        )
        raise RatingsFormatError(
            f"{where}: {int(dup.sum())} rows repeat a (user, item) pair, e.g. {shown}; "
            "pass duplicates='last' or 'mean' (--duplicates) to merge them"
        )
    if policy == "last":
        return frame.drop_duplicates(["user", "item"], keep="last")
    if policy == "mean":
        agg = {"rating": "mean"}
        if "timestamp" in frame.columns:
            agg["timestamp"] = "max"
        out = frame.groupby(["user", "item"], as_index=False, sort=False).agg(agg)
        out["rating"] = out["rating"].astype(np.float32)
        return out
    raise ValueError(f"unknown duplicates policy {policy!r}; use 'error', 'last' or 'mean'")
