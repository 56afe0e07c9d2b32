"""Honest splits: random holdout, per-user holdout, per-user temporal holdout, a global time cut,
held-out users (strong generalisation) and k-fold.

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


def time_cut(ratings: Ratings, test_pct: float = 0.2) -> tuple[Ratings, Ratings]:
    """Cut the log at one moment T: every rating before T trains, every rating at or after T is held out.

    T is the timestamp at the (1 - ``test_pct``) quantile (the earliest such timestamp), so about
    ``test_pct`` of the rows are held out; rows sharing T all go to test, so training never sees
    the moment it is tested on or anything after it (unlike a per-user temporal split, where one
    user's test can precede another user's training). Test users who only appear after T are new
    to the model, and are scored by its fallback.
    """
    if not ratings.has_timestamps:
        raise ValueError(f"{ratings.name}: a time cut needs a timestamp column")
    _check_pct(test_pct)
    t = ratings.frame["timestamp"].to_numpy()
    cut = np.sort(t)[min(len(t) - 1, int(np.floor((1 - test_pct) * len(t))))]
    test = t >= cut
    if test.all():
        raise ValueError(f"{ratings.name}: every rating has the timestamp {cut}: nothing is before the cut")
    return _parts(ratings, test, split="timecut", valid_pct=test_pct)


def heldout_users(
    ratings: Ratings,
    n_users: int | None = None,
    fold_in: float = 0.8,
    seed: int = 42,
    min_ratings: int = 5,
) -> tuple[Ratings, Ratings, Ratings]:
    """Strong generalisation (Liang et al. 2018): (train, fold-in, test) with users absent from train.

    ``n_users`` users are drawn at random (seeded) among those with at least ``min_ratings`` rows
    (default: a fifth of them, at most 10 000) and leave training entirely. Each one's rows are
    split at random: floor((1 - ``fold_in``) * n) of them (at least 1) are held out to be ranked,
    the rest are what the user gives the model to be folded in from.
    """
    if not 0 < fold_in < 1:
        raise ValueError(f"the fold-in fraction must be between 0 and 1, got {fold_in}")
    if min_ratings < 2:
        raise ValueError("a held-out user needs at least 2 ratings: one to fold in, one to rank")
    f = ratings.frame
    counts = f["user"].value_counts()
    eligible = np.sort(counts.index[counts >= min_ratings].to_numpy())
    if n_users is None:
        n_users = min(10_000, max(1, len(eligible) // 5))
    if not 1 <= n_users <= len(eligible):
        raise ValueError(
            f"{ratings.name}: can hold out 1..{len(eligible)} users (those with >= {min_ratings} ratings), not {n_users}"
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(eligible, n_users, replace=False)
    out = f["user"].isin(chosen).to_numpy()
    users = f["user"].to_numpy()
    rows = np.flatnonzero(out)
    order = rows[np.lexsort((rng.random(len(rows)), users[rows]))]  # shuffled within user
    rank, size = _rank_within(users[order])
    held = np.zeros(len(f), dtype=bool)
    held[order] = rank < np.maximum(1, np.floor((1 - fold_in) * size + 1e-9)).astype(np.int64)
    parts = (ratings.subset(~out, "train"), ratings.subset(out & ~held, "fold-in"), ratings.subset(held, "heldout"))
    for part in parts:
        part.origin = None  # not a split a record can name
    return parts


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
