"""SVD++: the implicit part sums the user's TRAINING items only, trains, saves and loads."""

from __future__ import annotations

import numpy as np
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.models.svdpp import SVDpp
from tests.conftest import make_ratings


def test_history_is_the_training_items_only(tiny):
    train, _ = ck.random_split(tiny, 0.2, seed=0)
    model = SVDpp.from_data(train, n_factors=4)
    ptr, items = model.history_indptr, model.history_items
    for u in [0, 5, len(model.users) - 1]:
        raw = model.users.ids[u]
        expected = set(model.items.lookup(train.frame.loc[train.frame["user"] == raw, "item"]))
        assert set(items[ptr[u] : ptr[u + 1]].tolist()) == expected  # no test item leaks in


def test_implicit_factors_are_the_scaled_sum(tiny):
    model = SVDpp.from_data(tiny, n_factors=4)
    u = torch.tensor([3, 0, 3, 7])
    got = model.implicit_factors(u)
    for row, user in zip(got, u.tolist()):
        seen = model.history_items[model.history_indptr[user] : model.history_indptr[user + 1]]
        want = model.implicit.weight[seen].sum(0) / len(seen) ** 0.5
        torch.testing.assert_close(row, want)


def test_forward_matches_head_of_representations(tiny):
    model = SVDpp.from_data(tiny, n_factors=4)
    u, i = torch.tensor([0, 1, 1, 9]), torch.tensor([2, 2, 5, 0])
    torch.testing.assert_close(model(u, i), model.head(model.user_repr(u), model.item_repr(i)))


def test_learns_and_round_trips(tmp_path):
    data = make_ratings(seed=3)
    train, test = ck.random_split(data, 0.2, seed=0)
    model = SVDpp.from_data(train, n_factors=4, seed=0)
    ck.fit_one_cycle(model, train, epochs=30, lr_max=1e-2, wd=0.01, bs=32, progress=False)
    mean = ck.GlobalMean.from_data(train)
    assert ck.evaluate_ratings(model, test)["rmse"] < ck.evaluate_ratings(mean, test)["rmse"]
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    f = test.frame
    np.testing.assert_array_equal(
        model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"])
    )
    assert torch.equal(again.history_items, model.history_items)


def test_unknown_user_gets_the_item_bias_fallback(tiny):
    model = SVDpp.from_data(tiny, n_factors=4)
    item = tiny.frame["item"].iloc[0]
    out = model.predict(["nobody", "nobody either"], [item, item])
    assert np.isfinite(out).all() and out[0] == out[1]
