"""What the simulator measures each round: the shared exposure metrics and its own ground-truth ones.

The exposure and concentration measures (Gini, coverage, top share, ARP, APLT...) are
``collabkit.evaluate.exposure``, the one definition that ``compare`` and the service's monitor use
too; this module adds what only a simulation can know (utility and NDCG against the true ratings)
and assembles a round's row. The frames read:

- exposures: one row per list slot shown, columns ``user``, ``item`` (and ``position``, ``round``).
- ratings (or consumptions): one row per rating, columns ``user``, ``item``, ``rating``; for
  utility also ``true`` (the ground-truth rating, known only in a simulation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from collabkit.evaluate.exposure import (
    aplt,
    arp,
    coverage,
    exposure_counts,
    gini,
    group_share,
    jaccard_overlap,
    lists_of,
    long_tail,
    top_share,
    top_user_share,
)
from collabkit.evaluate.metrics import rank_correlation  # noqa: F401  (one metrics module here)


def utility(consumed: pd.DataFrame, users: np.ndarray | None = None) -> float:
    """Mean true rating of what ``users`` (default: everyone) consumed (NaN: nothing consumed)."""
    rows = consumed if users is None else consumed[consumed["user"].isin(users)]
    return float(rows["true"].mean()) if len(rows) else float("nan")


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
    ``arp`` and ``aplt`` measure the lists against the popularity of the items in ``log``.
    ``gini`` and ``top1_share`` are over every slot shown; ``*_majority`` over the slots shown to
    majority users only, so that a growing minority with different lists does not mask (or fake)
    a concentration of what the majority is shown.
    """
    shown_users = exposures["user"].unique()
    majority = shown_users[~np.isin(shown_users, minority)]
    consumed_users = consumed["user"].unique()
    counts = exposure_counts(exposures, n_items)
    major = exposure_counts(exposures[exposures["user"].isin(majority)], n_items)
    popularity = np.bincount(log["item"].to_numpy(dtype=np.int64), minlength=n_items)
    lists = lists_of(exposures)
    return {
        "gini": gini(counts),
        "gini_majority": gini(major),
        "top1_share": top_share(counts, 0.01),
        "top1_share_majority": top_share(major, 0.01),
        "coverage": coverage(counts),
        "arp": _mean(arp(lists, popularity)),
        "aplt": _mean(aplt(lists, long_tail(popularity))),
        "fav_share_majority": group_share(exposures, majority, favourites),
        "utility_majority": utility(consumed, consumed_users[~np.isin(consumed_users, minority)]),
        "utility_minority": utility(consumed, consumed_users[np.isin(consumed_users, minority)]),
        "jaccard": jaccard_overlap(exposures),
        "top1_signal": top_user_share(log, 0.01),
        "top5_signal": top_user_share(log, 0.05),
    }


def _mean(per_user: np.ndarray) -> float:
    """Mean over users with a list (NaN when nobody was shown anything)."""
    shown = per_user[~np.isnan(per_user)]
    return float(shown.mean()) if shown.size else float("nan")
