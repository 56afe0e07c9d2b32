r"""Exposure and popularity metrics: one definition each, for ``compare``, the simulator and the monitor.

The currency is how often each catalogue item was shown (``exposure_counts`` from a log of slots,
``list_counts`` from top-k lists), and each item's popularity, its number of training ratings.
With L_u the items of user u's list (padding excluded), pop(i) the training count of item i:

    gini      sum_k (2k - n - 1) x_(k) / (n sum x), x the exposures of the n catalogue items sorted
              ascending (items never shown count 0): 0 when every item is shown equally
    coverage  share of the catalogue shown at least once
    arp       average recommendation popularity (Abdollahpouri et al. 2019; Yin et al. 2012):
              per user (1 / |L_u|) sum_{i in L_u} pop(i), averaged over users
    aplt      average percentage of long-tail items: per user |L_u & T| / |L_u|, averaged over users,
              T = the long tail: every item outside the short head, the most-rated items that
              together hold ``HEAD_SHARE`` (80%) of the training ratings (the 80/20 split)

``arp`` and ``aplt`` return one value per user (NaN for an empty list), so they are averaged,
resampled and split by group like any per-user metric; ``gini`` and ``coverage`` describe the lists
as a whole. The log frames read by the monitor-style helpers have one row per list slot shown:
columns ``user``, ``item`` (integer item index) and optionally ``position``, ``round``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

HEAD_SHARE = 0.8
"""The short head is the fewest most-rated items holding this share of the training ratings."""


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


def coverage(counts: np.ndarray) -> float:
    """Share of the catalogue shown at least once: #{i : counts_i > 0} / n (0 for no items)."""
    x = np.asarray(counts)
    return float((x > 0).mean()) if x.size else 0.0


def exposure_counts(exposures: pd.DataFrame, n_items: int) -> np.ndarray:
    """(n_items,) how often each item (integer index 0..n_items-1) was shown in a log of slots."""
    return np.bincount(exposures["item"].to_numpy(dtype=np.int64), minlength=n_items)


def list_counts(lists: np.ndarray, n_items: int) -> np.ndarray:
    """(n_items,) how often each item appears in top-k lists (U, k); negative entries are padding."""
    items = np.asarray(lists, dtype=np.int64).ravel()
    items = items[items >= 0]
    if items.size and items.max() >= n_items:
        raise ValueError(f"list item {items.max()} outside the catalogue of {n_items} items")
    return np.bincount(items, minlength=n_items)


def lists_of(exposures: pd.DataFrame) -> np.ndarray:
    """A log of slots as lists (n_users, longest list), one row per user (sorted), in ``position``
    order when the log has one; shorter lists are padded with -1."""
    f = exposures.sort_values(
        ["user", "position"] if "position" in exposures else ["user"], kind="stable"
    )
    codes, _ = pd.factorize(f["user"], sort=True)
    counts = np.bincount(codes) if len(codes) else np.zeros(0, dtype=np.int64)
    slot = np.arange(len(codes)) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.full((len(counts), int(counts.max(initial=0))), -1, dtype=np.int64)
    out[codes, slot] = f["item"].to_numpy(dtype=np.int64)
    return out


def long_tail(popularity: np.ndarray, head_share: float = HEAD_SHARE) -> np.ndarray:
    """(n_items,) True for long-tail items: outside the short head (see the module docstring).

    The short head is the smallest set of most-rated items whose counts reach ``head_share`` of
    the total (ties broken by index); items never rated are always in the tail.
    """
    if not 0 < head_share <= 1:
        raise ValueError(f"head_share must be in (0, 1], got {head_share}")
    pop = np.asarray(popularity, dtype=np.float64)
    tail = np.ones(pop.size, dtype=bool)
    if pop.sum() <= 0:
        return tail
    order = np.argsort(-pop, kind="stable")
    held = np.cumsum(pop[order])  # ratings held by the 1, 2, ... most-rated items
    n_head = int(np.searchsorted(held, head_share * held[-1] * (1 - 1e-12))) + 1
    tail[order[:n_head]] = False
    return tail


def _per_list(lists: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(U,) mean of ``values[item]`` over each row's non-padding items; NaN for an empty row."""
    lists = np.atleast_2d(np.asarray(lists, dtype=np.int64))
    valid = lists >= 0
    if lists.size and lists.max() >= len(values):
        raise ValueError(f"list item {lists.max()} outside the {len(values)} items given")
    values = np.asarray(values, dtype=np.float64)
    got = np.where(valid, values[np.where(valid, lists, 0)], 0.0) if values.size else np.zeros(lists.shape)
    n = valid.sum(axis=1)
    return np.where(n > 0, got.sum(axis=1) / np.maximum(n, 1), np.nan)


def arp(lists: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """(U,) average recommendation popularity of each list: mean training count of its items."""
    return _per_list(lists, popularity)


def aplt(lists: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """(U,) share of each list's items that are in the long tail (``tail``: a mask from ``long_tail``)."""
    return _per_list(lists, np.asarray(tail, dtype=np.float64))


def group_share(exposures: pd.DataFrame, users: np.ndarray, items: np.ndarray) -> float:
    """Share of the slots shown to ``users`` that hold one of ``items`` (NaN: no such slots).

    With users = the majority and items = the minority's favourites this is how much of the
    majority's recommendations the minority's taste has taken over.
    """
    mine = exposures[exposures["user"].isin(users)]
    if not len(mine):
        return float("nan")
    return float(mine["item"].isin(items).mean())


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
