"""Implicit feedback: who bought, clicked or watched what, without a rating.

``to_implicit`` turns any Ratings (from the same loaders) into interactions for the ranking models
of ``collabkit.models.implicit``. One row per (user, item) remains and its ``rating`` column is the
interaction's weight w_ui, read by the models as a confidence (iALS: c_ui = 1 + alpha * w_ui):

    weight="binary"  w_ui = 1                                  (bought / liked: the usual case)
    weight="count"   w_ui = number of rows of (user, item)     (an event log, one row per click)
    weight="rating"  w_ui = sum of the rating column's values  (a column of play counts, minutes...)

``threshold`` first keeps only the rows whose rating is at least that value (MovieLens as
implicit: rating >= 4 means liked); ``threshold=None`` keeps every row (any interaction counts).
Pairs whose rows all fall below the threshold are absent, not zero: implicit data has no
negatives, everything not observed is "unknown", which is what the samplers and iALS assume.
``interactions`` puts them in a model's vocabularies as a sparse (CSR) user x item matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from collabkit.data.interactions import Ratings, pair_keys
from collabkit.data.vocab import Vocab

Weight = Literal["binary", "count", "rating"]
WEIGHTS = ("binary", "count", "rating")


def to_implicit(
    ratings: Ratings, threshold: float | None = 4.0, weight: Weight = "binary"
) -> Ratings:
    """Ratings -> implicit interactions: rows with rating >= ``threshold``, weighted (see module doc).

    Repeated (user, item) rows collapse into one (its latest timestamp kept). Raises ValueError
    when no row passes the threshold, or when ``weight="rating"`` meets a value that is not a
    finite positive number (a confidence must be positive).
    """
    if weight not in WEIGHTS:
        raise ValueError(f"weight must be one of {WEIGHTS}, not {weight!r}")
    f = ratings.frame
    values = f["rating"].to_numpy(dtype=np.float64)
    if threshold is not None:
        keep = values >= threshold
        if not keep.any():
            low, high = np.nanmin(values), np.nanmax(values)
            # a log without ratings reads as all 1s: the default threshold 4 keeps none of it
            hint = (
                "; a log without ratings counts every row as 1: pass --threshold 0 (threshold=None) "
                "to take every row as a positive"
            ) if low == high == 1 else ""
            raise ValueError(
                f"{ratings.name}: no rating is >= {threshold} (ratings span {low:g}..{high:g}){hint}"
            )
        f = f[keep]
    if weight == "rating":
        r = f["rating"].to_numpy(dtype=np.float64)
        bad = ~(np.isfinite(r) & (r > 0))
        if bad.any():
            raise ValueError(
                f"{ratings.name}: weight='rating' needs finite positive values; {int(bad.sum())} row(s) are not, "
                f"e.g. {r[bad][:3].tolist()}"
            )
    agg = {"rating": "sum" if weight == "rating" else "size"}
    if ratings.has_timestamps:
        agg["timestamp"] = "max"
    out = f.groupby(["user", "item"], sort=False, as_index=False).agg(agg)
    if weight == "binary":
        out["rating"] = 1.0
    out["rating"] = out["rating"].astype(np.float32)
    kept = f"{len(f)} of {len(ratings)} rows" + (
        f" have rating >= {threshold:g}" if threshold is not None else ""
    )
    note = f"implicit ({weight}): {kept} -> {len(out)} interactions"
    top = float(out["rating"].max())
    result = ratings.with_frame(out, name=ratings.name)
    result.scale = (0.0, top)
    result.notes = [*ratings.notes, note]
    return result


@dataclass
class Interactions:
    """Interactions as a CSR matrix in a model's indices: row u lists user u's items (sorted) and weights."""

    indptr: np.ndarray  # (U + 1,) int64: user u's entries are [indptr[u], indptr[u + 1])
    items: np.ndarray  # (nnz,) int32 item indices, ascending within each user
    weights: np.ndarray  # (nnz,) float32 w_ui > 0
    n_items: int

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def users(self) -> np.ndarray:
        """(nnz,) the user index of each entry."""
        return np.repeat(np.arange(self.n_users, dtype=self.items.dtype), np.diff(self.indptr))

    def counts(self) -> np.ndarray:
        """(U,) number of items per user."""
        return np.diff(self.indptr)

    def transpose(self) -> Interactions:
        """The same matrix by item: row i lists the users of item i."""
        order = np.argsort(self.items, kind="stable")  # rows go by user: users stay ascending
        per_item = np.bincount(self.items, minlength=self.n_items)
        return Interactions(
            np.r_[0, np.cumsum(per_item)], self.users[order], self.weights[order], self.n_users
        )


def interactions(ratings: Ratings, users: Vocab, items: Vocab) -> Interactions:
    """``ratings`` as an Interactions matrix in the given vocabularies (what the implicit models fit).

    The rating column is read as weights. Raises UnknownIdError for ids outside the vocabularies
    and ValueError for weights that are not finite and positive, or for a repeated (user, item)
    pair (``to_implicit`` collapses those): nothing is dropped silently.
    """
    f = ratings.frame
    w = f["rating"].to_numpy()
    bad = ~(np.isfinite(w) & (w > 0))
    if bad.any():
        raise ValueError(
            f"{ratings.name}: implicit models read the rating column as a positive weight, but {int(bad.sum())} "
            f"row(s) are not (e.g. {w[bad][:3].tolist()}); convert with to_implicit(ratings, threshold=...)"
        )
    # One int64 key u * n_items + i (pair_keys) carries both indices through the sort: 28 bytes an
    # interaction at the peak (key, permutation, sorted key and weights; 8 held), where a lexsort
    # of int64 columns took twice that. Input already in (user, item) order is not permuted.
    n = len(items)
    key = pair_keys(users.lookup(f["user"]), items.lookup(f["item"]), n)
    w = w.astype(np.float32, copy=False)
    if len(key) > 1 and not bool((key[1:] >= key[:-1]).all()):
        order = np.argsort(key, kind="stable")
        w, key = w[order], key[order]
        del order
    dup = key[1:] == key[:-1]
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        u, i = divmod(int(key[k]), n)
        raise ValueError(
            f"{ratings.name}: (user, item) pair ({users.decode([u])[0]}, {items.decode([i])[0]}) appears more "
            "than once; collapse repeats with to_implicit(..., weight='count' or 'binary')"
        )
    del dup
    i = (key % n).astype(np.int32)
    key //= n
    indptr = np.r_[0, np.cumsum(np.bincount(key, minlength=len(users)))].astype(np.int64)
    del key
    if not w.flags.owndata:
        w = w.copy()  # never a view of the caller's frame
    return Interactions(indptr, i, w, len(items))
