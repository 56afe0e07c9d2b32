"""Results by group: every metric split by how much training data its users or items have.

``by="user-activity"`` puts each test user in the bucket of their number of training ratings;
``by="item-popularity"`` puts each held-out rating (and relevant item) in the bucket of its item's
number of training ratings, so a group's rmse is over the ratings of its items and its ranking
metrics count only its relevant items as hits (``share@k``: the share of the lists' slots its
items take). Buckets: 0 (unknown to training), 1, 2-5, 6-20, 21-100, > 100. Each group has its
counts and a bootstrap interval per metric over all the test users (a user outside the group
counts 0), so a small group shows a wide interval instead of a confident number.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from collabkit.evaluate.scores import Outcome
from collabkit.evaluate.uncertainty import LEVEL, N_RESAMPLES, summary

BY = ("user-activity", "item-popularity")
#: (label, fewest, most training ratings)
BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("0", 0, 0), ("1", 1, 1), ("2-5", 2, 5), ("6-20", 6, 20), ("21-100", 21, 100), (">100", 101, np.inf),
)  # fmt: skip


def check_by(by: str | None) -> None:
    if by is not None and by not in BY:
        raise ValueError(f"--by must be one of {', '.join(BY)}, not {by!r}")


def by_group(
    result: Outcome,
    by: str,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per bucket: group, counts, every metric's value and ``intervals`` {metric: [low, high]}.

    user-activity counts: n_users (test users in the bucket) and n_ratings (their held-out
    ratings); item-popularity: n_items (catalogue items in the bucket), n_ratings (held-out
    ratings of its items) and n_users (test users with one of them).
    """
    check_by(by)
    rows = []
    held_users = result.held["user"].to_numpy()
    for label, lo, hi in BUCKETS:
        if by == "user-activity":
            members = (result.user_counts >= lo) & (result.user_counts <= hi)
            metrics = {name: m.where(members) for name, m in result.metrics().items()}
            counts = {"n_users": int(members.sum()), "n_ratings": int(members[held_users].sum())}
        else:
            metrics = result.metrics((lo, hi))
            pop, held = result.popularity, result.held["item_count"].to_numpy()
            in_group = (held >= lo) & (held <= hi)
            counts = {
                "n_items": int(((pop >= lo) & (pop <= hi)).sum()),
                "n_ratings": int(in_group.sum()),
                "n_users": len(np.unique(held_users[in_group])),
            }
        values, intervals = summary(metrics, n_resamples, level, seed)
        rows.append({"group": label, **counts, **values, "intervals": intervals})
    return rows
