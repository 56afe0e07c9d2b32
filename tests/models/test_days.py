"""Day offsets: keys of (user, day) groups, shrunk residual means, lookups that miss to zero."""

from __future__ import annotations

import numpy as np
import pandas as pd

from collabkit.models import days


def test_keys_group_a_users_ratings_by_utc_day_and_unknown_users_match_nothing():
    t = np.array([0, 86_399, 86_400, 0, 5 * 86_400])
    keys = days.day_keys(np.array([3, 3, 3, 4, -1]), t)
    assert keys[0] == keys[1] != keys[2]  # the same UTC day, then the next
    assert keys[0] != keys[3]  # another user, the same day
    assert keys[4] < 0


def test_offsets_are_shrunk_residual_means_and_missing_groups_get_none():
    keys = days.day_keys(np.array([0, 0, 0, 1]), np.array([10, 20, 30, 10]))
    table, sums, counts = days.residual_sums(keys, np.array([1.0, 0.5, 0.5, -2.0]))
    values = days.shrunk(sums, counts, reg=1.0)
    np.testing.assert_allclose(values, [2.0 / 4, -2.0 / 2])  # sum / (count + reg)
    query = days.day_keys(np.array([0, 1, 1, -1]), np.array([50, 40, 86_400 * 2, 10]))
    np.testing.assert_allclose(days.lookup(table, values, query), [0.5, -1.0, 0.0, 0.0])
    assert days.lookup(table[:0], values[:0], query).tolist() == [0, 0, 0, 0]


def test_ratings_of_users_the_model_does_not_know_get_no_offsets(tiny):
    import collabkit as ck

    model = ck.DotProductBias.from_data(tiny, n_factors=2)
    stranger = tiny.frame.assign(user=-7)  # ids the model has never seen
    table, _ = days.fit_offsets(model, tiny.with_frame(pd.concat([tiny.frame, stranger])), reg=1.0)
    assert (table >= 0).all() and len(table) == len(tiny.frame.groupby(["user", tiny.frame["timestamp"] // 86_400]))
