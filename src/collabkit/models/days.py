"""Day offsets: a user's ratings on one day share a shift no model of (user, item) pairs explains.

Koren's temporal dynamics (KDD 2009) found a day-specific user bias b_{u,t} the strongest of
the time effects on Netflix; on ML-100k u1 adding one, fitted on a model's residuals, moves the
``best`` preset's test RMSE from 0.886 to 0.882. The offset of (user u, day t) is the shrunk
mean of the model's training residuals on that day, ``sum(r - p) / (n + reg)``; a pair given no
time, or a (user, day) without training ratings, gets none. A per-(user, day) constant never
changes the order of one user's items at one time, so recommendations are unaffected: the
offsets serve predictions of ratings whose time is known (held-out evaluation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from collabkit.data.interactions import Ratings

#: seconds in a day: days are UTC days of the epoch-seconds timestamps
DAY_SECONDS = 86_400


def day_keys(user_index: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """int64 keys of (user index, UTC day) pairs; an unknown user (index < 0) gets a key < 0."""
    day = np.floor_divide(np.asarray(timestamps, dtype=np.int64), DAY_SECONDS) & 0xFFFFFFFF
    u = np.asarray(user_index, dtype=np.int64)
    return np.where(u >= 0, (u << 32) | day, -1)


def residual_sums(keys: np.ndarray, residuals: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted distinct keys, residual sum, count) of each (user, day) group."""
    table, inverse = np.unique(keys, return_inverse=True)
    return table, np.bincount(inverse, weights=residuals, minlength=len(table)), np.bincount(inverse, minlength=len(table))


def shrunk(sums: np.ndarray, counts: np.ndarray, reg: float) -> np.ndarray:
    """Each group's offset: its residual sum over (count + reg), float32."""
    return (sums / (counts + reg)).astype(np.float32)


def positions(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Each key's position in the sorted ``table``; -1 for keys it does not hold (or < 0)."""
    if len(table) == 0:
        return np.full(len(keys), -1)
    at = np.minimum(np.searchsorted(table, keys), len(table) - 1)
    return np.where((table[at] == keys) & (keys >= 0), at, -1)


def lookup(table: np.ndarray, values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``values`` at ``keys`` in the sorted ``table``; 0 for keys it does not hold."""
    at = positions(table, keys)
    out = np.zeros(len(keys), dtype=np.float32)
    out[at >= 0] = values[at[at >= 0]]
    return out


def residual_groups(model: Any, ratings: Ratings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted keys, residual sum, count) of the (user, day) groups of ``ratings``: ``model``'s
    residuals on them, scored without times; a user the model does not know has no group."""
    f = ratings.frame
    if ratings.times is None:
        raise ValueError(f"{ratings.name}: day offsets need a timestamp column")
    residuals = f["rating"].to_numpy(np.float64) - model.predict(f["user"], f["item"]).astype(np.float64)
    keys = day_keys(model.users.lookup(f["user"], strict=False), ratings.times)
    known = keys >= 0
    return residual_sums(keys[known], residuals[known])


def fit_offsets(model: Any, ratings: Ratings, reg: float) -> tuple[np.ndarray, np.ndarray]:
    """(sorted keys, offsets) of the (user, day) groups of ``ratings`` (``residual_groups``),
    shrunk by ``reg``."""
    table, sums, counts = residual_groups(model, ratings)
    return table, shrunk(sums, counts, reg)
