"""Exposure and concentration metrics over a log of recommendations and ratings.

Plain functions over pandas frames and numpy arrays, so a production monitor can compute them
from its own logs. The frames they read:

- exposures: one row per list slot shown, columns ``user``, ``item`` (and ``position``, ``round``).
- ratings (or consumptions): one row per rating, columns ``user``, ``item``, ``rating``; for
  utility also ``true`` (the ground-truth rating, known only in a simulation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from collabkit.evaluate.metrics import rank_correlation  # noqa: F401  (one metrics module here)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (e.g. exposures per catalogue item).

    G = sum_k (2k - n - 1) x_(k) / (n sum x), x sorted ascending, k = 1..n: 0 when every item is
    shown equally, (n - 1) / n when one item takes every exposure; 0 for an all-zero vector.
    Over a catalogue of n items of which m were shown, G = 1 - (m / n)(1 - G_shown), G_shown the
    Gini among the shown items: with coverage m / n = 5% it can only move within [0.95, 1], so a
    change in how the shown items share the slots appears 20 times smaller (``top_share`` doesn't).
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    k = np.arange(1, n + 1)
    return float(((2 * k - n - 1) * x).sum() / (n * total))


def top_share(counts: np.ndarray, fraction: float) -> float:
    """Share of the total held by the largest k = max(1, round(fraction * n)) of n counts.

    Over exposures per catalogue item (zeros for items never shown) with fraction 0.01 it is the
    monitor's ``top1_share``: k / n when every count is equal, 1 when those k take everything;
    over ratings per user, the most active users' share. NaN when all are zero.
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    if not len(x) or x.sum() <= 0:
        return float("nan")
    k = max(1, round(fraction * len(x)))
    return float(x[:k].sum() / x.sum())


def exposure_counts(exposures: pd.DataFrame, n_items: int) -> np.ndarray:
    """(n_items,) how often each item (integer index 0..n_items-1) was shown."""
    return np.bincount(exposures["item"].to_numpy(dtype=np.int64), minlength=n_items)


def coverage(exposures: pd.DataFrame, n_items: int) -> float:
    """Share of the catalogue shown to anyone at least once."""
    return float(exposures["item"].nunique() / n_items) if n_items else 0.0


def group_share(exposures: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> float:
    """Share of the slots shown to ``users`` that hold one of ``items`` (NaN: no such slots).

    With users = the majority and items = the minority's favourites this is how much of the
    majority's recommendations the minority's taste has taken over.
    """
    mine = exposures[exposures["user"].isin(users)]
    if not len(mine):
        return float("nan")
    return float(mine["item"].isin(items).mean())


def utility(consumed: pd.DataFrame, users: np.ndarray | None = None) -> float:
    """Mean true rating of what ``users`` (default: everyone) consumed (NaN: nothing consumed)."""
    rows = consumed if users is None else consumed[consumed["user"].isin(users)]
    return float(rows["true"].mean()) if len(rows) else float("nan")


def jaccard_overlap(exposures: pd.DataFrame) -> float:
    """Mean Jaccard |A & B| / |A | B| over all pairs of distinct users' lists (homogenisation).

    1 when everyone sees the same list, 0 when no two lists share an item; NaN below two users.
    """
    users, u = np.unique(exposures["user"].to_numpy(), return_inverse=True)
    items, i = np.unique(exposures["item"].to_numpy(), return_inverse=True)
    n = len(users)
    if n < 2:
        return float("nan")
    x = np.zeros((n, len(items)), dtype=np.float32)
    x[u, i] = 1.0  # a repeated (user, item) counts once
    inter = x @ x.T  # (U, U) |A & B|
    size = np.diag(inter)
    union = size[:, None] + size[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        jac = np.where(union > 0, inter / union, 0.0)
    off = ~np.eye(n, dtype=bool)
    return float(jac[off].mean())


def top_user_share(ratings: pd.DataFrame, fraction: float) -> float:
    """Share of the rows (training signal) from the most active ``fraction`` of users (>= 1 user)."""
    return top_share(ratings["user"].value_counts().to_numpy(), fraction)


def rmse(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error between predictions and ground truth (any matching shapes)."""
    d = np.asarray(predicted, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return float(np.sqrt(np.mean(d**2))) if d.size else float("nan")


def ndcg_truth(
    scores: np.ndarray, truth: np.ndarray, seen: np.ndarray, n: int, low: float
) -> float:
    """Mean NDCG@n of each user's top-n unseen items by ``scores`` against their true ratings.

    (U, I) arrays, -inf scores for items the model cannot rank. Gain = truth - low (the worst
    rating gains nothing), discount 1 / log2(position + 1); the ideal list is the user's n best
    unseen items by truth. 1 when the model orders each user's unseen items as their taste does:
    how personalised, not how popular, the system's lists are. NaN without users.
    """
    if not len(scores):
        return float("nan")
    disc = 1.0 / np.log2(np.arange(n) + 2.0)  # (n,)
    s = np.where(seen, -np.inf, scores)
    top = np.argsort(-s, axis=1, kind="stable")[:, :n]  # (U, n)
    ok = np.isfinite(np.take_along_axis(s, top, 1))
    dcg = (np.where(ok, np.take_along_axis(truth, top, 1) - low, 0.0) * disc).sum(1)
    best = -np.sort(-np.where(seen, -np.inf, truth), axis=1)[:, :n]  # (U, n) descending
    idcg = (np.where(np.isfinite(best), best - low, 0.0) * disc).sum(1)
    return float(np.mean(np.where(idcg > 0, dcg / np.maximum(idcg, 1e-12), 0.0)))


def round_metrics(
    exposures: pd.DataFrame,
    consumed: pd.DataFrame,
    log: pd.DataFrame,
    n_items: int,
    minority: np.ndarray,
    favourites: np.ndarray,
) -> dict[str, float]:
    """Every exposure metric of one window (a round): the monitor's row.

    ``exposures`` and ``consumed`` are the window's; ``log`` the rows the model was trained on;
    ``minority`` holds the minority's user ids and ``favourites`` their favourite item ids.
    ``gini`` and ``top1_share`` are over every slot shown; ``*_majority`` over the slots shown to
    majority users only, so that a growing minority with different lists does not mask (or fake)
    a concentration of what the majority is shown.
    """
    shown_users = exposures["user"].unique()
    majority = shown_users[~np.isin(shown_users, minority)]
    consumed_users = consumed["user"].unique()
    counts = exposure_counts(exposures, n_items)
    major = exposure_counts(exposures[exposures["user"].isin(majority)], n_items)
    return {
        "gini": gini(counts),
        "gini_majority": gini(major),
        "top1_share": top_share(counts, 0.01),
        "top1_share_majority": top_share(major, 0.01),
        "coverage": coverage(exposures, n_items),
        "fav_share_majority": group_share(exposures, majority, favourites),
        "utility_majority": utility(consumed, consumed_users[~np.isin(consumed_users, minority)]),
        "utility_minority": utility(consumed, consumed_users[np.isin(consumed_users, minority)]),
        "jaccard": jaccard_overlap(exposures),
        "top1_signal": top_user_share(log, 0.01),
        "top5_signal": top_user_share(log, 0.05),
    }
