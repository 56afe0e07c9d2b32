"""I-AutoRec: codes come from the stored training columns; it learns, clips and round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.models.autorec import AutoRec
from tests.conftest import make_ratings


def test_item_codes_come_from_the_training_column(tiny):
    model = AutoRec.from_data(tiny, n_factors=8, epochs=1)
    model.fit(tiny)
    R = torch.zeros(len(model.items), len(model.users))
    enc = ck.core.loop.encode(model, tiny)
    R[enc.items, enc.users] = enc.ratings
    i = torch.tensor([4, 0, 4, 2])
    want = torch.sigmoid(R[i] @ model.encoder.weight.T + model.encoder.bias)
    torch.testing.assert_close(model.item_repr(i), want)


def test_learns_and_round_trips(tmp_path):
    data = make_ratings(seed=5)
    train, test = ck.random_split(data, 0.2, seed=0)
    model = AutoRec.from_data(train, n_factors=32, reg=5.0, epochs=300, lr=3e-2, seed=0)
    model.fit(train)
    mean = ck.GlobalMean.from_data(train)
    assert ck.evaluate_ratings(model, test)["rmse"] < 0.95 * ck.evaluate_ratings(mean, test)["rmse"]
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    f = test.frame
    np.testing.assert_array_equal(
        model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"])
    )
    all_items = again.score_all_items(torch.tensor([0, 2]))
    pairs = again.predict_idx(torch.tensor([0] * len(again.items)), torch.arange(len(again.items)))
    torch.testing.assert_close(all_items[0], pairs)


def test_unknown_user_gets_the_baseline(tiny):
    model = AutoRec.from_data(tiny, n_factors=8, epochs=5)
    model.fit(tiny)
    item = tiny.frame["item"].iloc[0]
    out = model.predict(["nobody"], [item])
    i = int(model.items.lookup([item])[0])
    want = float(tiny.frame["rating"].mean()) + float(model.baseline_item[i])
    assert out[0] == pytest.approx(want, rel=1e-5)


def test_a_zero_rating_is_fitted_as_a_rating():
    """On a scale holding 0 (here 0..4) a 0 is a rating the loss counts, not an unrated cell."""
    data = make_ratings()
    data = data.with_frame(data.frame.assign(rating=data.frame["rating"] - 1))  # 0..4
    model = AutoRec.from_data(data, n_factors=32, epochs=200, reg=0.1, lr=1e-2)
    model.fit(data)
    f = data.frame
    p = model.predict(f["user"], f["item"])
    zero, four = p[(f["rating"] == 0).to_numpy()], p[(f["rating"] == 4).to_numpy()]
    assert len(zero) and len(four)
    assert four.mean() - zero.mean() > 2.0  # fitted: the 0s are predicted low
