"""Time offsets: ratings a user gave close together in time share a shift no model of (user,
item) pairs explains.

Koren's temporal dynamics (KDD 2009) found a day-specific user bias b_{u,t} the strongest of the
time effects on Netflix. With timestamps finer than days the shift is sharper still: on ML-100k
the residuals of ratings given within a minute or two of each other agree far more than those of
one day. So the offset of a rating by user u at time t is a kernel-weighted, shrunk mean of the
model's training residuals of u near t,

    offset(u, t) = sum_j w_j (r_j - p_j) / (sum_j w_j + reg),   w_j = exp(-|t - t_j| / scale),

over the NEIGHBOURS training ratings of u on each side of t (further ones weigh nothing at the
scales used). A wide ``scale`` (a day) gives day offsets; timestamps that are whole days give them
whatever the scale. A pair given no time, or a user without training ratings, gets none. One
shift per (user, time) never reorders one user's items at one time, so recommendations are
unaffected: the offsets serve predictions of ratings whose time is known (held-out evaluation).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from collabkit.data.interactions import Ratings

#: training ratings on each side of a rating's time that its offset weighs
NEIGHBOURS = 20
#: kernel widths (seconds) auto and the ``best`` preset's tuning choose among: half a minute to a day
SCALES = (30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 21_600.0, 86_400.0)
#: shrinkages they choose among: offset = weighted residual sum / (weight + reg)
REGS = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)

_TIME_BITS = 33  # seconds after the origin a key holds: 272 years
_TIME_MASK = (1 << _TIME_BITS) - 1
_CHUNK = 16_384  # queries weighed at once: bounds the (queries, 2 * NEIGHBOURS) arrays


def point_keys(user_index: np.ndarray, timestamps: np.ndarray, origin: int) -> np.ndarray:
    """int64 keys ordering (user index, time) pairs by user, then time (seconds after ``origin``,
    clipped to the range a key holds); an unknown user (index < 0) gets a key < 0."""
    t = np.clip(np.asarray(timestamps, dtype=np.int64) - origin, 0, _TIME_MASK)
    u = np.asarray(user_index, dtype=np.int64)
    return np.where(u >= 0, (u << _TIME_BITS) | t, -1)


def group(user_index: np.ndarray, timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, ...]:
    """(sorted distinct keys, sum of ``values``, count, origin, each row's point) of the rows'
    (user index, second) points, the origin their earliest time; rows of unknown users (index < 0)
    must be left out first."""
    origin = int(np.min(timestamps)) if len(timestamps) else 0
    keys, inverse = np.unique(point_keys(user_index, timestamps, origin), return_inverse=True)
    return keys, np.bincount(inverse, values, len(keys)), np.bincount(inverse, minlength=len(keys)), origin, inverse


def residual_points(model: Any, ratings: Ratings) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(sorted distinct keys, residual sum, count, origin) of ``ratings`` at each (user, second):
    ``model``'s residuals, scored without times; a user the model does not know has no points."""
    f = ratings.frame
    if ratings.times is None:
        raise ValueError(f"{ratings.name}: time offsets need a timestamp column")
    residuals = f["rating"].to_numpy(np.float64) - model.predict(f["user"], f["item"]).astype(np.float64)
    users = model.users.lookup(f["user"], strict=False)
    known = users >= 0
    return group(users[known], ratings.times[known], residuals[known])[:4]


def weighed(
    keys: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    origin: int,
    scales: tuple[float, ...],
    user_index: np.ndarray,
    timestamps: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(kernel-weighted residual sums, weights), each (scales, queries), of the queries (user
    index, time) over the points (``residual_points``) at each kernel width in ``scales``: each
    query weighs the 2 * NEIGHBOURS points around its place in ``keys`` that are its user's."""
    num, den = np.zeros((2, len(scales), len(user_index)))
    if len(keys) == 0:
        return num, den
    for s in range(0, len(user_index), _CHUNK):
        q = point_keys(user_index[s : s + _CHUNK], timestamps[s : s + _CHUNK], origin)
        window = np.searchsorted(keys, q)[:, None] + np.arange(-NEIGHBOURS, NEIGHBOURS)
        at = np.clip(window, 0, len(keys) - 1)
        mine = (window >= 0) & (window < len(keys)) & (q[:, None] >= 0) & (keys[at] >> _TIME_BITS == q[:, None] >> _TIME_BITS)
        seconds = np.abs(origin + (keys[at] & _TIME_MASK) - np.asarray(timestamps[s : s + _CHUNK], dtype=np.int64)[:, None])
        for k, scale in enumerate(scales):
            w = np.where(mine, np.exp(-seconds / scale), 0.0)
            num[k, s : s + _CHUNK] = (w * sums[at]).sum(1)
            den[k, s : s + _CHUNK] = (w * counts[at]).sum(1)
    return num, den


def offsets(
    keys: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    origin: int,
    scale: float,
    reg: float,
    user_index: np.ndarray,
    timestamps: np.ndarray,
) -> np.ndarray:
    """float32 offsets of the queries (user index, time) from the points (``residual_points``)
    with kernel width ``scale`` and shrinkage ``reg``; 0 where the user has no point."""
    num, den = weighed(keys, sums, counts, origin, (scale,), user_index, timestamps)
    return (num[0] / (den[0] + reg)).astype(np.float32)
