"""Splits partition the rows exactly and hold out what they promise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from collabkit.data.interactions import Ratings
from collabkit.data.split import (
    heldout_users,
    kfold,
    random_split,
    temporal_split,
    time_cut,
    user_split,
)
from tests.conftest import make_ratings

KEY = ["user", "item"]


def keys(r: Ratings) -> set[tuple]:
    return set(map(tuple, r.frame[KEY].itertuples(index=False, name=None)))


def assert_partition(ratings: Ratings, train: Ratings, test: Ratings) -> None:
    """train and test are disjoint, their union is every row, and each row is kept intact."""
    assert len(train) + len(test) == len(ratings)
    assert not keys(train) & keys(test)
    assert keys(train) | keys(test) == keys(ratings)
    both = pd.concat([train.frame, test.frame]).sort_values(KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(both, ratings.frame.sort_values(KEY).reset_index(drop=True))


def per_user(r: Ratings) -> pd.Series:
    return r.frame.groupby("user").size()


def str_ratings() -> Ratings:
    """String user ids with 1..6 ratings each, and timestamps."""
    rows = [
        (f"u{u}", f"i{i}", float(1 + (u + i) % 5), 1000 * u + i)
        for u in range(1, 7)
        for i in range(u)
    ]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return Ratings(frame, name="strs")


# --- random_split -------------------------------------------------------------------------------
@pytest.mark.parametrize("pct", [0.1, 0.2, 0.5, 0.9])
def test_random_split_partitions_and_respects_pct(tiny, pct):
    train, test = random_split(tiny, valid_pct=pct, seed=1)
    assert_partition(tiny, train, test)
    assert len(test) == round(pct * len(tiny))


def test_random_split_names_and_shares_metadata(tiny):
    train, test = random_split(tiny)
    assert (train.name, test.name) == ("train", "test")
    assert train.items is tiny.items and test.items is tiny.items
    assert train.scale == test.scale == tiny.scale
    assert train.frame.index.tolist() == list(range(len(train)))  # fresh 0..n-1 index


def test_random_split_same_seed_same_split(tiny):
    a_train, a_test = random_split(tiny, seed=7)
    b_train, b_test = random_split(tiny, seed=7)
    pd.testing.assert_frame_equal(a_test.frame, b_test.frame)
    pd.testing.assert_frame_equal(a_train.frame, b_train.frame)


def test_random_split_different_seed_different_split(tiny):
    _, a = random_split(tiny, seed=1)
    _, b = random_split(tiny, seed=2)
    assert keys(a) != keys(b)


def test_random_split_does_not_modify_input(tiny):
    before = tiny.frame.copy()
    random_split(tiny)
    pd.testing.assert_frame_equal(tiny.frame, before)


@pytest.mark.parametrize("pct", [0, 1, -0.1, 1.5, float("nan")])
def test_random_split_bad_pct(tiny, pct):
    with pytest.raises(ValueError, match="between 0 and 1"):
        random_split(tiny, valid_pct=pct)


# --- user_split ---------------------------------------------------------------------------------
@pytest.mark.parametrize("pct", [0.2, 0.5])
def test_user_split_partitions(tiny, pct):
    train, test = user_split(tiny, test_pct=pct, seed=3)
    assert_partition(tiny, train, test)


@pytest.mark.parametrize("pct", [0.2, 0.5, 0.9])
def test_user_split_every_user_keeps_a_train_row(tiny, pct):
    train, _ = user_split(tiny, test_pct=pct)
    assert set(train.frame["user"]) == set(tiny.frame["user"])


@pytest.mark.parametrize("pct", [0.2, 0.3, 0.5])
def test_user_split_holds_out_pct_of_each_user(tiny, pct):
    _, test = user_split(tiny, test_pct=pct, seed=5)
    size = per_user(tiny)
    held = per_user(test).reindex(size.index, fill_value=0)
    expected = np.minimum(np.floor(pct * size + 0.5), size - 1)
    assert (held == expected).all()
    assert (np.abs(held - pct * size) <= 0.5 + 1e-9).all()  # the nearest whole number of rows


def test_user_split_single_rating_users_stay_in_train():
    frame = pd.DataFrame({"user": [1, 2, 2, 2, 2, 2], "item": [1, 1, 2, 3, 4, 5], "rating": 3.0})
    r = Ratings(frame)
    train, test = user_split(r, test_pct=0.4)
    assert 1 not in set(test.frame["user"]) and 1 in set(train.frame["user"])
    assert per_user(test)[2] == 2


def test_user_split_with_string_ids():
    r = str_ratings()
    train, test = user_split(r, test_pct=0.5)
    assert_partition(r, train, test)
    assert set(train.frame["user"]) == set(r.frame["user"])


def test_user_split_seeds(tiny):
    assert keys(user_split(tiny, seed=1)[1]) == keys(user_split(tiny, seed=1)[1])
    assert keys(user_split(tiny, seed=1)[1]) != keys(user_split(tiny, seed=2)[1])


@pytest.mark.parametrize("pct", [0, 1, 2, -1])
def test_user_split_bad_pct(tiny, pct):
    with pytest.raises(ValueError):
        user_split(tiny, test_pct=pct)


# --- temporal_split -----------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 3])
def test_temporal_split_holds_out_each_users_newest(tiny, k):
    train, test = temporal_split(tiny, last_k=k)
    assert_partition(tiny, train, test)
    size = per_user(tiny)
    held = per_user(test).reindex(size.index, fill_value=0)
    assert (held[size > k] == k).all()
    assert (held[size <= k] == 0).all()
    # every test row is at least as new as every train row of the same user
    newest_train = train.frame.groupby("user")["timestamp"].max()
    oldest_test = test.frame.groupby("user")["timestamp"].min()
    assert (oldest_test >= newest_train.reindex(oldest_test.index)).all()


def test_temporal_split_picks_exactly_the_latest_rows():
    frame = pd.DataFrame(
        {
            "user": [1, 1, 1, 1, 2, 2, 3],
            "item": [10, 11, 12, 13, 10, 11, 10],
            "rating": 4.0,
            "timestamp": [40, 10, 30, 20, 5, 6, 1],
        }
    )
    train, test = temporal_split(Ratings(frame), last_k=2)
    assert keys(test) == {(1, 10), (1, 12)}  # user 1's two newest; user 2 has only 2; user 3 has 1
    assert keys(train) == {(1, 11), (1, 13), (2, 10), (2, 11), (3, 10)}


def test_temporal_split_users_with_few_ratings_stay_in_train():
    r = str_ratings()  # user u1 has 1 rating, u2 has 2, ...
    train, test = temporal_split(r, last_k=2)
    assert_partition(r, train, test)
    assert not {"u1", "u2"} & set(test.frame["user"])
    assert set(train.frame["user"]) == set(r.frame["user"])
    assert (per_user(test) == 2).all()


def test_temporal_split_ties_are_deterministic():
    frame = pd.DataFrame(
        {"user": [1, 1, 1], "item": [1, 2, 3], "rating": 3.0, "timestamp": [5, 5, 5]}
    )
    r = Ratings(frame)
    assert keys(temporal_split(r)[1]) == keys(temporal_split(r)[1])
    assert len(temporal_split(r)[1]) == 1


def test_temporal_split_needs_timestamps(tiny):
    no_ts = tiny.with_frame(tiny.frame.drop(columns="timestamp"), name="nots")
    with pytest.raises(ValueError, match="nots.*timestamp"):
        temporal_split(no_ts)


@pytest.mark.parametrize("k", [0, -1])
def test_temporal_split_bad_k(tiny, k):
    with pytest.raises(ValueError, match="last_k"):
        temporal_split(tiny, last_k=k)


# --- kfold --------------------------------------------------------------------------------------
@pytest.mark.parametrize("folds", [2, 3, 5])
def test_kfold_every_row_in_exactly_one_test_fold(tiny, folds):
    pairs = list(kfold(tiny, folds=folds, seed=0))
    assert len(pairs) == folds
    tests = [keys(test) for _, test in pairs]
    for a in range(folds):
        for b in range(a + 1, folds):
            assert not tests[a] & tests[b]
    assert set().union(*tests) == keys(tiny)
    assert sum(len(t) for t in tests) == len(tiny)
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= 1  # balanced
    for train, test in pairs:
        assert_partition(tiny, train, test)


def test_kfold_names_and_seed(tiny):
    pairs = list(kfold(tiny, folds=3, seed=4))
    names = [(tr.name, te.name) for tr, te in pairs]
    assert names == [("train1", "test1"), ("train2", "test2"), ("train3", "test3")]
    again = [keys(te) for _, te in kfold(tiny, folds=3, seed=4)]
    assert again == [keys(te) for _, te in pairs]
    other = [keys(te) for _, te in kfold(tiny, folds=3, seed=5)]
    assert other != again


@pytest.mark.parametrize("folds", [1, 0, -3])
def test_kfold_too_few_folds_raises_at_the_call(tiny, folds):
    with pytest.raises(ValueError, match="folds"):
        kfold(tiny, folds=folds)  # no iteration needed: checked eagerly


def test_kfold_more_folds_than_rows_raises():
    r = make_ratings(n_users=2, n_items=2, density=0.0, seed=1)
    with pytest.raises(ValueError, match="folds"):
        kfold(r, folds=len(r) + 1)


def test_time_cut_never_trains_on_the_future():
    data = make_ratings(n_users=50, n_items=30)
    train, test = time_cut(data, 0.2)
    assert_partition(data, train, test)
    assert train.frame["timestamp"].max() < test.frame["timestamp"].min()
    assert abs(len(test) / len(data) - 0.2) < 0.01
    # ties at the cut go to test: 10 rows at t = 1..10, plus two more at t = 8
    frame = pd.DataFrame({"user": range(12), "item": 0, "rating": 3.0, "timestamp": [*range(1, 11), 8, 8]})
    train, test = time_cut(Ratings(frame), 0.2)
    assert sorted(test.frame["timestamp"]) == [8, 8, 8, 9, 10] and train.frame["timestamp"].max() == 7
    with pytest.raises(ValueError, match="timestamp"):
        time_cut(Ratings(frame.drop(columns="timestamp")))
    with pytest.raises(ValueError, match="nothing is before"):
        time_cut(Ratings(frame.assign(timestamp=5)))


def test_heldout_users_leave_training_and_are_split_80_20():
    data = str_ratings()  # u1..u6 with 1..6 ratings: u5 and u6 have >= 5
    train, fold_in, test = heldout_users(data, n_users=2, fold_in=0.8, seed=3)
    assert len(train) + len(fold_in) + len(test) == len(data)
    out = set(fold_in.frame["user"]) | set(test.frame["user"])
    assert out == {"u5", "u6"} and not out & set(train.frame["user"])
    assert per_user(test).to_dict() == {"u5": 1, "u6": 1}  # floor(0.2 * 5) = floor(0.2 * 6) = 1
    assert per_user(fold_in).to_dict() == {"u5": 4, "u6": 5}
    assert not keys(fold_in) & keys(test)
    again = heldout_users(data, n_users=2, fold_in=0.8, seed=3)
    assert keys(again[2]) == keys(test)  # seeded
    big = make_ratings(n_users=100, n_items=40)
    train, fold_in, test = heldout_users(big, seed=1)
    eligible = (per_user(big) >= 5).sum()
    assert test.n_users == eligible // 5  # default: a fifth of the eligible users
    with pytest.raises(ValueError, match="hold out 1..2 users"):
        heldout_users(data, n_users=3)
    with pytest.raises(ValueError, match="fold-in fraction"):
        heldout_users(data, fold_in=1.0)
