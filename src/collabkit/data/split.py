"""Honest splits: random holdout, per-user holdout, per-user temporal holdout and k-fold.

Canonical ML-100k splits (u1..u5, ua, ub) live in ``movielens.canonical_split``.
Every split returns (train, test) Ratings that share metadata and partition the rows exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from collabkit.data.interactions import Ratings


def random_split(ratings: Ratings, valid_pct: float = 0.2, seed: int = 42) -> tuple[Ratings, Ratings]:
    """Hold out a random ``valid_pct`` of all rows (the fastai chapter's split)."""
    _check_pct(valid_pct)
    rng = np.random.default_rng(seed)
    n = len(ratings)
    test = np.zeros(n, dtype=bool)
    test[rng.permutation(n)[: round(valid_pct * n)]] = True
    return _parts(ratings, test, split="random", valid_pct=valid_pct, seed=seed)


def user_split(ratings: Ratings, test_pct: float = 0.2, seed: int = 42) -> tuple[Ratings, Ratings]:
    """Hold out ``test_pct`` of each user's rows at random (every user keeps at least one in train)."""
    _check_pct(test_pct)
    rng = np.random.default_rng(seed)
    users = ratings.frame["user"].to_numpy()
    order = np.lexsort((rng.random(len(users)), users))  # shuffle within user
    rank, size = _rank_within(users[order])
    n_test = np.floor(test_pct * size + 0.5).astype(np.int64)
    n_test = np.minimum(n_test, size - 1)
    test = np.zeros(len(users), dtype=bool)
    test[order] = rank < n_test
    return _parts(ratings, test, split="user", valid_pct=test_pct, seed=seed)


def temporal_split(ratings: Ratings, last_k: int = 1) -> tuple[Ratings, Ratings]:
    """Hold out each user's last ``last_k`` ratings by timestamp (leave-last-out for k=1).

    Users with ``last_k`` ratings or fewer stay entirely in train so nobody is unknown at test time.
    """
    if not ratings.has_timestamps:
        raise ValueError(f"{ratings.name}: temporal split needs a timestamp column")
    if last_k < 1:
        raise ValueError("last_k must be at least 1")
    f = ratings.frame
    users = f["user"].to_numpy()
    # newest first within each user; ties broken by row order for determinism
    order = np.lexsort((-np.arange(len(f)), -f["timestamp"].to_numpy(), users))
    rank, size = _rank_within(users[order])
    test = np.zeros(len(f), dtype=bool)
    test[order] = (rank < last_k) & (size > last_k)
    if last_k != 1:  # the record names leave-last-out only
        return _parts(ratings, test)
    return _parts(ratings, test, split="temporal")


def kfold(ratings: Ratings, folds: int = 5, seed: int = 42) -> Iterator[tuple[Ratings, Ratings]]:
    """Yield ``folds`` (train, test) pairs; every row is in exactly one test fold.

    Arguments are checked at the call, not at the first ``next()``.
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    if folds > len(ratings):
        raise ValueError(
            f"{ratings.name}: {folds} folds need at least {folds} ratings, got {len(ratings)}"
        )
    return _kfold(ratings, folds, seed)


def _kfold(ratings: Ratings, folds: int, seed: int) -> Iterator[tuple[Ratings, Ratings]]:
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(ratings)) % folds
    for k in range(folds):
        test = fold_of == k
        train, held = _parts(ratings, test)  # a fold is not a recorded split
        train.name, held.name = f"train{k + 1}", f"test{k + 1}"
        yield train, held


def _parts(ratings: Ratings, test: np.ndarray, **recipe: object) -> tuple[Ratings, Ratings]:
    """(train, test) rows of ``ratings``; both record the split ``recipe`` (none: no record)."""
    origin = ratings.origin
    # a part of a part cannot be read back from a record: only an unsplit source's parts are
    if not recipe or origin is None or origin.get("split") not in (None, "none"):
        origin = None
    else:
        origin = {**origin, **recipe}
    train, held = ratings.subset(~test, "train"), ratings.subset(test, "test")
    train.origin = held.origin = origin
    return train, held


def _rank_within(sorted_groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a grouped array: position of each element within its group, and its group's size."""
    n = len(sorted_groups)
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes)
    return rank, np.repeat(sizes, sizes)


def _check_pct(p: float) -> None:
    if not 0 < p < 1:
        raise ValueError(f"the held-out fraction must be between 0 and 1, got {p}")
