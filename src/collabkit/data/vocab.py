"""Vocab: the one place where users' own ids meet the model's contiguous indices."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd


class UnknownIdError(KeyError):
    """Raised when an id is not in a vocabulary and the caller asked for strictness."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class Vocab:
    """Maps raw ids (ints or strings, in the user's own type) to indices 0..n-1 and back.

    Indices follow the sorted order of the ids, so the same data always gives the same vocab.
    There is no hidden padding entry: index i is exactly ``ids[i]``.
    """

    def __init__(self, ids: Iterable[Any], name: str = "id") -> None:
        if not isinstance(ids, (np.ndarray, pd.Series, pd.Index, list, tuple)):
            ids = list(ids)  # generators, sets, dict keys...
        values = pd.Index(pd.unique(pd.Series(ids)))
        self.name = name
        self._index = values.sort_values()
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

    def to_json(self) -> dict[str, Any]:
        kind = "int" if pd.api.types.is_integer_dtype(self._index.dtype) else "str"
        values = [int(v) for v in self.ids] if kind == "int" else [str(v) for v in self.ids]
        return {"name": self.name, "kind": kind, "ids": values}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Vocab:
        """The vocabulary ``to_json`` wrote; anything else is a ValueError, never a vocabulary
        whose indices silently differ (ids must be in index order, each once)."""
        kind, ids, name = obj.get("kind"), obj.get("ids"), obj.get("name")
        plain = {"int": lambda v: type(v) is int and abs(v) < 2**63, "str": lambda v: isinstance(v, str)}
        if kind not in plain or not isinstance(name, str) or not isinstance(ids, list) or not all(map(plain[kind], ids)):
            raise ValueError("malformed vocabulary: {name, kind: int|str, ids: [ids of that kind]} expected")
        if any(a >= b for a, b in itertools.pairwise(ids)):
            raise ValueError(f"malformed {name} vocabulary: the ids are not in index order (sorted, each once)")
        return cls(np.asarray(ids, dtype=np.int64 if kind == "int" else object), name=name)


def _coerce_like(arr: pd.Index, target: pd.Index) -> pd.Index:
    """Let '42' find 42 (and 42 find '42'): ids typed on a command line arrive as strings.

    Ids are text, never parsed as numbers: only a string of digits ('42', '-7') finds an integer
    id, so '1e3', '42.0' or '1e400' are ids of their own (unknown to an integer vocabulary).
    """
    if pd.api.types.is_integer_dtype(target.dtype) and not pd.api.types.is_integer_dtype(arr.dtype):
        if pd.api.types.is_float_dtype(arr.dtype):  # whole floats (an id column read with NaN) match
            num = arr.to_numpy()
            whole = np.isfinite(num) & (num == np.round(num)) & (np.abs(num) < 2**62)
            out = np.full(len(num), None, dtype=object)
            out[whole] = num[whole].astype(np.int64)
            return pd.Index(out, dtype=object)
        return pd.Index([_as_int(v) for v in arr], dtype=object)
    if not pd.api.types.is_integer_dtype(target.dtype):
        return pd.Index(arr.astype(str))
    return arr


_INT_TEXT = re.compile(r"\s*[+-]?\d{1,18}\s*")


def _as_int(v: Any) -> Any:
    """An integer id for an int, a whole float, or a string of digits; anything else as it is."""
    if isinstance(v, (bool, np.bool_)):
        return repr(bool(v))  # True is no id 1
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return int(v) if np.isfinite(v) and v == round(v) and abs(v) < 2**62 else v
    if isinstance(v, str) and _INT_TEXT.fullmatch(v):
        return int(v)
    return v
