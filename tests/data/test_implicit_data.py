"""to_implicit (ratings -> weighted interactions) and the CSR matrix the implicit models fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import collabkit as ck
from collabkit.data.implicit import interactions, to_implicit
from collabkit.data.vocab import Vocab
from tests.conftest import make_ratings


def test_threshold_keeps_liked_rows_as_ones(tiny):
    out = to_implicit(tiny, threshold=4)
    liked = tiny.frame[tiny.frame["rating"] >= 4]
    assert len(out) == len(liked)
    assert set(zip(out.frame["user"], out.frame["item"])) == set(zip(liked["user"], liked["item"]))
    assert (out.frame["rating"] == 1.0).all() and out.scale == (0.0, 1.0)
    assert "timestamp" in out.frame and out.items is tiny.items
    assert out.notes[-1].startswith(
        f"implicit (binary): {len(liked)} of {len(tiny)} rows have rating >= 4"
    )


def test_no_threshold_keeps_everything(tiny):
    assert len(to_implicit(tiny, threshold=None)) == len(tiny)


def test_count_and_rating_weights_collapse_repeats():
    log = pd.DataFrame(
        {
            "user": [1, 1, 1, 2, 2],
            "item": [7, 7, 8, 7, 7],
            "rating": [2.0, 3.0, 1.0, 0.5, 0.5],
            "timestamp": [5, 9, 1, 2, 3],
        }
    )
    r = ck.Ratings(log)
    counts = to_implicit(r, None, "count").frame.set_index(["user", "item"])
    assert (
        counts.loc[(1, 7), "rating"] == 2
        and counts.loc[(2, 7), "rating"] == 2
        and counts.loc[(1, 8), "rating"] == 1
    )
    assert counts.loc[(1, 7), "timestamp"] == 9  # the latest interaction
    sums = to_implicit(r, None, "rating").frame.set_index(["user", "item"])["rating"]
    assert sums[(1, 7)] == 5.0 and sums[(2, 7)] == 1.0
    binary = to_implicit(r, 1.0, "binary").frame
    assert len(binary) == 2 and set(binary["item"]) == {
        7,
        8,
    }  # user 2's 0.5s fall below the threshold


def test_bad_input_is_named():
    r = ck.Ratings(pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [1.0, -2.0]}))
    with pytest.raises(ValueError, match="no rating is >= 9"):
        to_implicit(r, 9)
    with pytest.raises(ValueError, match="finite positive"):
        to_implicit(r, None, "rating")
    with pytest.raises(ValueError, match="weight must be one of"):
        to_implicit(r, weight="clicks")


def test_interactions_is_the_csr_of_the_frame():
    data = to_implicit(make_ratings(n_users=20, n_items=15, seed=3), threshold=3)
    users, items = Vocab(data.frame["user"]), Vocab(data.frame["item"])
    m = interactions(data, users, items)
    dense = np.zeros((len(users), len(items)))
    dense[users.lookup(data.frame["user"]), items.lookup(data.frame["item"])] = 1
    rebuilt = np.zeros_like(dense)
    rebuilt[m.users, m.items] = m.weights
    np.testing.assert_array_equal(rebuilt, dense)
    assert all((np.diff(m.items[a:b]) > 0).all() for a, b in zip(m.indptr[:-1], m.indptr[1:]))
    t = m.transpose()
    back = np.zeros_like(dense.T)
    back[t.users, t.items] = t.weights
    np.testing.assert_array_equal(back, dense.T)


def test_interactions_refuse_repeats_unknown_ids_and_bad_weights():
    frame = pd.DataFrame({"user": [1, 1], "item": [5, 5], "rating": [1.0, 1.0]})
    v_u, v_i = Vocab([1]), Vocab([5])
    with pytest.raises(ValueError, match=r"\(1, 5\) appears more than once"):
        interactions(ck.Ratings(frame), v_u, v_i)
    with pytest.raises(ck.UnknownIdError):
        interactions(ck.Ratings(frame.assign(item=[5, 6])), v_u, v_i)
    with pytest.raises(ValueError, match="positive weight"):
        interactions(ck.Ratings(frame.head(1).assign(rating=np.nan)), v_u, v_i)
