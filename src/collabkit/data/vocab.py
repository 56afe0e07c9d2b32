"""Vocab: the one place where users' own ids meet the model's contiguous indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from collabkit.data.checks import _INT_TEXT


class UnknownIdError(KeyError):
    """Raised when an id is not in a vocabulary and the caller asked for strictness."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class Vocab:
    """Maps raw ids (ints or strings, in the user's own type) to indices 0..n-1 and back.

    Indices follow the sorted order of the ids, so the same data always gives the same vocab.
    There is no hidden padding entry: index i is exactly ``ids[i]``. A vocabulary grown with new
    ids (``extended``) keeps every known id at its index and numbers the new ones after them, so
    the order is then sorted within each generation, not overall (``sort=False`` keeps it).
    """

    def __init__(self, ids: Iterable[Any], name: str = "id", sort: bool = True) -> None:
        if not isinstance(ids, (np.ndarray, pd.Series, pd.Index, list, tuple)):
            ids = list(ids)  # generators, sets, dict keys...
        values = pd.Index(pd.unique(pd.Series(ids)))
        self.name = name
        self._index = values.sort_values() if sort else values
        if self._index.hasnans:
            raise ValueError(f"{name} vocabulary: ids must not be missing (NaN/None)")

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, raw: Any) -> bool:
        """Same matching as ``lookup``: '42' is in a vocabulary of int ids holding 42."""
        return bool(self.lookup([raw], strict=False)[0] >= 0)

    def __repr__(self) -> str:
        return f"Vocab({self.name!r}, n={len(self)})"

    @property
    def ids(self) -> np.ndarray:
        """Raw ids in index order."""
        return self._index.to_numpy()

    def lookup(self, raw: Sequence[Any] | np.ndarray | pd.Series | Any, strict: bool = True) -> np.ndarray:
        """Raw ids -> int64 indices; unknown ids raise (strict) or map to -1."""
        if isinstance(raw, (pd.Series, pd.Index)):
            arr = pd.Index(raw)
        elif isinstance(raw, np.ndarray) and raw.dtype != object:
            arr = pd.Index(np.atleast_1d(raw))
        else:
            arr = pd.Index(np.atleast_1d(np.asarray(raw, dtype=object)))
        idx = self._index.get_indexer(_coerce_like(arr, self._index))
        if strict and (idx < 0).any():
            missing = list(arr[idx < 0][:5])
            raise UnknownIdError(
                f"unknown {self.name} id(s) {missing}"
                + (f" and {int((idx < 0).sum()) - 5} more" if (idx < 0).sum() > 5 else "")
                + f"; the model knows {len(self)} {self.name}s"
            )
        return idx.astype(np.int64, copy=False)  # no second copy of a large column

    def decode(self, idx: np.ndarray | Sequence[int]) -> np.ndarray:
        """Indices -> raw ids; -1 (an unknown id from ``lookup(strict=False)``) is an error."""
        idx = np.asarray(idx, dtype=np.int64)
        bad = (idx < 0) | (idx >= len(self))
        if bad.any():
            raise IndexError(
                f"{self.name} index(es) {np.atleast_1d(idx[bad])[:5].tolist()} out of range: "
                f"the vocabulary has {len(self)} {self.name}s (0..{len(self) - 1})"
            )
        return self._index.to_numpy()[idx]

    def extended(self, ids: Iterable[Any]) -> Vocab:
        """This vocabulary plus the ``ids`` it does not know, numbered after the known ones (sorted
        among themselves): no known id changes index. New ids are matched like ``lookup``'s ('42'
        is 42 in a vocabulary of ints); one that cannot be an id of this vocabulary's type (text
        in a vocabulary of integers) is a ValueError naming it."""
        if not isinstance(ids, (np.ndarray, pd.Series, pd.Index, list, tuple)):
            ids = list(ids)
        given = pd.Index(pd.unique(pd.Series(ids, dtype=object)))
        fresh = given[self._index.get_indexer(_coerce_like(given, self._index)) < 0]
        if not len(fresh):
            return self
        fits = self.fits(fresh)
        if not fits.all():
            raise ValueError(f"new {self.name} id(s) {list(fresh[~fits][:5])} are not integers, as this vocabulary's ids are")
        fresh = pd.Index(pd.unique(pd.Series(_coerce_like(fresh, self._index)))).sort_values()
        if pd.api.types.is_integer_dtype(self._index.dtype):
            fresh = fresh.astype(np.int64)
        return Vocab(self._index.append(fresh), self.name, sort=False)

    def fits(self, ids: Sequence[Any] | np.ndarray | pd.Series | pd.Index) -> np.ndarray:
        """(n,) True where an id can be one of this vocabulary's (``extended`` takes it): any id
        for text ids; for integer ids, integers and their canonical text ('42', not 'x' or '5e1')."""
        arr = pd.Index(ids if isinstance(ids, (pd.Series, pd.Index)) else np.asarray(ids, dtype=object))
        if not pd.api.types.is_integer_dtype(self._index.dtype) or pd.api.types.is_integer_dtype(arr.dtype):
            return np.ones(len(arr), dtype=bool)
        coerced = _coerce_like(arr, self._index)
        return np.fromiter((isinstance(v, (int, np.integer)) for v in coerced), bool, len(coerced))

    def to_json(self) -> dict[str, Any]:
        kind = "int" if pd.api.types.is_integer_dtype(self._index.dtype) else "str"
        values = [int(v) for v in self.ids] if kind == "int" else [str(v) for v in self.ids]
        return {"name": self.name, "kind": kind, "ids": values}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Vocab:
        """The vocabulary ``to_json`` wrote; anything else is a ValueError, never a vocabulary
        whose indices silently differ (each id once, in index order)."""
        kind, ids, name = obj.get("kind"), obj.get("ids"), obj.get("name")
        plain = {"int": lambda v: type(v) is int and abs(v) < 2**63, "str": lambda v: isinstance(v, str)}
        if kind not in plain or not isinstance(name, str) or not isinstance(ids, list) or not all(map(plain[kind], ids)):
            raise ValueError("malformed vocabulary: {name, kind: int|str, ids: [ids of that kind]} expected")
        if len(set(ids)) != len(ids):
            raise ValueError(f"malformed {name} vocabulary: an id is there twice")
        # saved in index order: sorted at first, then grown by updates (new ids after the known)
        return cls(np.asarray(ids, dtype=np.int64 if kind == "int" else object), name=name, sort=False)


def _coerce_like(arr: pd.Index, target: pd.Index) -> pd.Index:
    """Let '42' find 42 (and 42 find '42'): ids typed on a command line arrive as strings.

    Text becomes an integer only in the reader's canonical form (``checks.as_ids``: "42", "-7",
    "42.0"), so "5e1", "1e400" or "007" stay text and find nothing in a vocabulary of ints: an id
    is never parsed as a number that only looks like one. Numbers must be finite whole numbers.
    """
    if pd.api.types.is_integer_dtype(target.dtype) and not pd.api.types.is_integer_dtype(arr.dtype):
        out = pd.Series(arr, dtype=object).copy()
        text = out.map(lambda x: isinstance(x, str)).to_numpy(dtype=bool)
        if text.any():
            words = out[text].astype(str).str.strip()
            canonical = words.str.fullmatch(_INT_TEXT).to_numpy(dtype=bool)
            out.loc[out.index[text][canonical]] = (
                words[canonical].str.replace(r"\.0*$", "", regex=True).astype(np.int64).to_numpy()
            )
        flags = out.map(lambda x: isinstance(x, bool | np.bool_)).to_numpy(dtype=bool)
        out[flags] = out[flags].map(lambda x: repr(bool(x)))  # True is no id 1
        text = text | flags
        if (~text).any():
            num = pd.to_numeric(out[~text], errors="coerce").astype(np.float64)
            ok = (np.isfinite(num) & (num == np.round(num)) & (num.abs() < 2.0**53)).to_numpy(dtype=bool)
            out.loc[out.index[~text][ok]] = num[ok].astype(np.int64).to_numpy()
        return pd.Index(out.to_numpy(), dtype=object)
    if not pd.api.types.is_integer_dtype(target.dtype):
        return pd.Index(arr.astype(str))
    return arr
