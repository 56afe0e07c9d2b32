"""Ensemble: a weighted average of its members, through every scoring path, and after load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.models.autorec import AutoRec
from collabkit.models.ensemble import Ensemble


@pytest.fixture
def members(tiny):
    a = ck.DotProductBias.from_data(tiny, n_factors=3, seed=0)
    ck.fit_one_cycle(a, tiny, epochs=2, progress=False)
    b = AutoRec.from_data(tiny, n_factors=8, epochs=5)
    b.fit(tiny)
    return a, b


def test_predictions_are_the_weighted_average(tiny, members):
    model = Ensemble.of(list(members), [0.3, 0.7])
    f = tiny.frame.head(30)
    want = 0.3 * members[0].predict(f["user"], f["item"]) + 0.7 * members[1].predict(
        f["user"], f["item"]
    )
    np.testing.assert_allclose(model.predict(f["user"], f["item"]), want, rtol=1e-6)
    u, i = torch.tensor([0, 1, 2]), torch.tensor([3, 3, 0])
    torch.testing.assert_close(
        model.head(model.user_repr(u), model.item_repr(i)), model.score(u, i)
    )
    torch.testing.assert_close(
        model.score_all_items(u)[:, 3], model.score(u, torch.tensor([3, 3, 3]))
    )


def test_round_trip_and_unknown_ids(tiny, members, tmp_path):
    model = Ensemble.of(list(members), [0.5, 0.5])
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    f = tiny.frame
    np.testing.assert_array_equal(
        model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"])
    )
    out = again.predict(["nobody", "nobody"], [f["item"].iloc[0], "no item"])
    assert np.isfinite(out).all()


def test_members_must_share_ids(tiny, members):
    other = ck.DotProductBias.from_data(
        tiny.subset(tiny.frame["user"] != tiny.frame["user"].iloc[0]), n_factors=3
    )
    with pytest.raises(ValueError, match="same training data"):
        Ensemble.of([members[0], other], [0.5, 0.5])
