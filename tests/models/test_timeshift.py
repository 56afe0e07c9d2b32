"""Time offsets: points of (user, second), kernel-weighted shrunk residual means over a user's own
nearby points, nothing for users or times without points."""

from __future__ import annotations

import numpy as np
import pandas as pd

from collabkit.models import timeshift


def points(users: list[int], times: list[int], residuals: list[float], origin: int = 1000):
    keys, inverse = np.unique(timeshift.point_keys(np.array(users), np.array(times), origin), return_inverse=True)
    return keys, np.bincount(inverse, residuals, len(keys)), np.bincount(inverse, minlength=len(keys)).astype(float)


def test_keys_order_points_by_user_then_time_and_unknown_users_match_nothing():
    keys = timeshift.point_keys(np.array([3, 3, 4, 3, -1]), np.array([1500, 1200, 1100, 900, 1200]), origin=1000)
    assert keys[3] < keys[1] < keys[0] < keys[2]  # user 3 in time (900 clipped to the origin), then user 4
    assert keys[4] < 0


def test_an_offset_is_the_kernel_weighted_shrunk_mean_of_the_users_own_residuals():
    keys, sums, counts = points([0, 0, 0, 1], [1000, 1060, 1060, 1030], [1.0, 0.5, -0.1, -2.0])
    assert len(keys) == 3 and counts.tolist() == [1, 2, 1]  # two ratings in one second: one point
    got = timeshift.offsets(keys, sums, counts, 1000, 60.0, 2.0, np.array([0, 1, 1, -1]), np.array([1030, 1030, 10**9, 1030]))
    w = np.exp(-np.array([30, 30]) / 60)  # user 0 at 1030: 30 s from 1000 and from the pair at 1060
    want0 = (w[0] * 1.0 + w[1] * 0.4) / (w[0] + 2 * w[1] + 2.0)
    np.testing.assert_allclose(got, [want0, -2.0 / 3.0, 0.0, 0.0], rtol=1e-6, atol=1e-7)  # far in time: ~0


def test_only_the_nearest_points_on_each_side_weigh_and_no_points_give_zero():
    n = timeshift.NEIGHBOURS + 10
    times = list(range(1000, 1000 + 2 * n * 10, 10))
    keys, sums, counts = points([0] * len(times), times, [1.0] * n + [-1.0] * n)
    at = np.array([times[n] - 5])  # between the last +1 and the first -1: NEIGHBOURS of each weigh
    np.testing.assert_allclose(timeshift.offsets(keys, sums, counts, 1000, 1e9, 0.0, np.array([0]), at), [0.0], atol=1e-6)
    early = np.array([900])  # before every point: only the first NEIGHBOURS (all +1) weigh
    np.testing.assert_allclose(timeshift.offsets(keys, sums, counts, 1000, 1e9, 0.0, np.array([0]), early), [1.0])
    empty = timeshift.offsets(keys[:0], sums[:0], counts[:0], 1000, 60.0, 1.0, np.array([0]), early)
    assert empty.tolist() == [0.0]


def test_ratings_of_users_the_model_does_not_know_make_no_points(tiny):
    import collabkit as ck

    model = ck.DotProductBias.from_data(tiny, n_factors=2)
    stranger = tiny.frame.assign(user=-7)  # ids the model has never seen
    keys, _, counts, origin = timeshift.residual_points(model, tiny.with_frame(pd.concat([tiny.frame, stranger])))
    assert (keys >= 0).all() and counts.sum() == len(tiny.frame)
    assert origin == tiny.frame["timestamp"].min()
