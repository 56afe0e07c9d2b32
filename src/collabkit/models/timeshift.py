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


def residual_points(model: Any, ratings: Ratings) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(sorted distinct keys, residual sum, count, origin) of ``ratings`` at each (user, second):
    ``model``'s residuals, scored without times; a user the model does not know has no points."""
    f = ratings.frame
    if ratings.times is None:
        raise ValueError(f"{ratings.name}: time offsets need a timestamp column")
    residuals = f["rating"].to_numpy(np.float64) - model.predict(f["user"], f["item"]).astype(np.float64)
    users = model.users.lookup(f["user"], strict=False)
    known = users >= 0
    origin = int(np.min(ratings.times[known])) if known.any() else 0
    keys, inverse = np.unique(point_keys(users[known], ratings.times[known], origin), return_inverse=True)
    return keys, np.bincount(inverse, residuals[known], len(keys)), np.bincount(inverse, minlength=len(keys)), origin


class Window:
    """The training points near each query (user index, time): positions (queries, 2 *
    NEIGHBOURS) in the sorted ``keys``, whether each is the query user's, and its distance in
    seconds; ``weights(scale)`` turns them into kernel weights (0 for another user's point)."""

    def __init__(self, keys: np.ndarray, origin: int, user_index: np.ndarray, timestamps: np.ndarray) -> None:
        q = point_keys(user_index, timestamps, origin)
        n = len(keys)
        window = np.searchsorted(keys, q)[:, None] + np.arange(-NEIGHBOURS, NEIGHBOURS)
        self.at = np.clip(window, 0, max(n - 1, 0))
        self.mine = (window >= 0) & (window < n) & (q[:, None] >= 0)
        if n:
            self.mine &= (keys[self.at] >> _TIME_BITS) == (q[:, None] >> _TIME_BITS)
            point_time = origin + (keys[self.at] & _TIME_MASK)
            self.seconds = np.abs(point_time - np.asarray(timestamps, dtype=np.int64)[:, None]).astype(np.float64)
        else:
            self.seconds = np.zeros(self.at.shape)

    def weights(self, scale: float) -> np.ndarray:
        return np.where(self.mine, np.exp(-self.seconds / scale), 0.0)


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
    index, time) over the points (``residual_points``) at each kernel width in ``scales``."""
    num, den = np.zeros((2, len(scales), len(user_index)))
    if len(keys) == 0:
        return num, den
    for s in range(0, len(user_index), _CHUNK):
        window = Window(keys, origin, user_index[s : s + _CHUNK], timestamps[s : s + _CHUNK])
        for k, scale in enumerate(scales):
            w = window.weights(scale)
            num[k, s : s + _CHUNK] = (w * sums[window.at]).sum(1)
            den[k, s : s + _CHUNK] = (w * counts[window.at]).sum(1)
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
