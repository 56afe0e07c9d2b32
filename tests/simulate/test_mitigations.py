"""Mitigations on hand-made cases."""

import numpy as np
import pandas as pd
import pytest

from collabkit.simulate.mitigations import (
    Mitigation,
    calibrate,
    cap_per_user,
    explore,
    parse_mitigation,
    penalise_popularity,
)


def test_cap_per_user_keeps_at_most_cap():
    log = pd.DataFrame({"user": [1] * 50 + [2] * 3, "item": range(53), "rating": 4.0})
    kept = cap_per_user(log, 10, np.random.default_rng(0))
    assert kept["user"].value_counts().to_dict() == {1: 10, 2: 3}


def test_calibrate_follows_the_users_genre_mix():
    # items 0..3 genre A, 4..7 genre B; the model prefers B, the user's history is half A half B
    genres = np.repeat(np.eye(2), 4, axis=0)
    items = np.array([[4, 5, 6, 7, 0, 1, 2, 3]])
    scores = np.array([[5.0, 4.9, 4.8, 4.7, 4.0, 3.9, 3.8, 3.7]])
    taste = np.array([[0.5, 0.5]])
    out = calibrate(items, scores, taste, genres, n=4, lam=0.9)
    assert sorted(out[0]) == [0, 1, 4, 5]
    plain = calibrate(items, scores, taste, genres, n=4, lam=0.0)
    assert plain[0].tolist() == [4, 5, 6, 7]


def test_explore_fills_the_last_slots_with_least_rated():
    items = np.array([[0, 1, 2, 3, 4, 5]])
    counts = np.array([9, 9, 9, 5, 1, 7])
    assert explore(items, 4, 2, counts)[0].tolist() == [0, 1, 4, 3]


def test_popularity_penalty_hand_computed():
    # scores normalise to s = 1, 0.5, 0; log1p counts 99, 9, 0 over log1p 99 give pop = 1, 0.5, 0
    items = np.array([[10, 11, 12, -1]])
    scores = np.array([[3.0, 2.0, 1.0, -np.inf]])
    counts = np.zeros(13)
    counts[[10, 11]] = [99, 9]
    # lam 0.75: 0.25 s - 0.75 pop = -0.5, -0.25, 0 -> the least-logged item first
    out, new = penalise_popularity(items, scores, counts, 0.75)
    assert out[0].tolist() == [12, 11, 10, -1]
    assert new[0, :3].tolist() == pytest.approx([0.0, -0.25, -0.5])
    # lam 0.25: 0.75 s - 0.25 pop = 0.5, 0.25, 0 -> the model's order stands
    assert penalise_popularity(items, scores, counts, 0.25)[0][0].tolist() == [10, 11, 12, -1]


def test_parse_mitigation():
    assert parse_mitigation("none") == Mitigation()
    assert parse_mitigation("cap=40,calibrate=0.3") == Mitigation(cap=40, calibrate=0.3)
    assert parse_mitigation("ipw+explore=3").name == "ipw+explore=3"
    assert parse_mitigation("popularity=0.3") == Mitigation(popularity=0.3)
    assert parse_mitigation("popularity").name == "popularity=0.5"
    with pytest.raises(ValueError, match="unknown mitigation"):
        parse_mitigation("shuffle")
