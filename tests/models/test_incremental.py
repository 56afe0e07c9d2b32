"""New items by fold-in and updates: the item solve recovers a planted item, folded-in items land
near their trained representations, updates keep known ids, refuse what they cannot use, and
record where they came from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import collabkit as ck
from collabkit.data.movielens import canonical_split
from collabkit.data.source import DataSource
from collabkit.evaluate.metrics import rank_correlation
from collabkit.models.incremental import LR_SHARE, recorded_ratings
from collabkit.models.linear import UserPrior, map_fold_in, squash
from tests.conftest import make_ratings

#: an update whose new ratings are ratings the model was trained on moves its predictions of
#: held-out pairs by at most this RMSE (the stated tolerance of ``models.incremental``)
KNOWN_DATA_MOVE = 0.03


@pytest.fixture(scope="module")
def trained():
    data = make_ratings(n_users=80, n_items=50, density=0.4, seed=1)
    train, test = ck.random_split(data, 0.2, seed=0)
    model, _ = ck.build_model("dot-bias(n_factors=4, epochs=20, lr_max=3e-2, wd=0.01)", train)
    return model, train, test


def planted(n_users: int = 60, dim: int = 3, seed: int = 0) -> tuple[ck.DotProductBias, torch.Tensor]:
    """A dot-bias model with random user factors and biases, and a true item [factors, bias]."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"user": np.arange(n_users), "item": 0, "rating": 3.0})
    model = ck.DotProductBias.from_data(ck.Ratings(frame, scale=(1, 5)), n_factors=dim)
    with torch.no_grad():
        model.user_factors.weight.copy_(torch.from_numpy(rng.normal(0, 1, (n_users, dim))))
        model.user_bias.weight.copy_(torch.from_numpy(rng.normal(0, 0.3, (n_users, 1))))
    return model, torch.tensor([0.6, -0.4, 0.2, 0.3], dtype=torch.float64)


def test_the_item_solve_recovers_a_planted_item_from_noiseless_ratings():
    model, truth = planted()
    users = torch.arange(40)
    B, d = model.item_linear(users)
    ratings = squash(B @ truth + d, model.config.y_range)[0]
    weak = UserPrior(torch.zeros(4, dtype=torch.float64), torch.full((4,), 1e-6, dtype=torch.float64))
    found = map_fold_in(model, users, ratings, weak, steps=20, side="item")
    torch.testing.assert_close(found, truth, atol=1e-4, rtol=0)


def test_an_item_folded_in_from_its_ratings_lands_near_its_trained_representation(data_root):
    """ML-100k u1, dot-bias: each of 50 items with 20+ training ratings, folded in from them as if
    new, ranks the users as the trained item does, and predicts its training ratings about as
    well (the MAP solve shrinks towards the prior, training decays the weights: close, not equal)."""
    train, _ = canonical_split("u1", name="ml-100k", data_dir=data_root)
    model, _ = ck.build_model("dot-bias(n_factors=50)", train)
    f = train.frame
    counts = f["item"].value_counts()
    items = np.sort(counts.index[counts.to_numpy() >= 20].to_numpy())[:50]
    rows = f[f["item"].isin(items)]
    copy = {i: 100_000 + int(i) for i in items}
    grown = model.with_items(train.with_frame(rows.assign(item=rows["item"].map(copy))), 1, model.item_prior(train))
    with torch.no_grad():
        scores = grown.score_all_items(torch.arange(len(grown.users))).double().numpy()
    orig, new = grown.items.lookup(items), grown.items.lookup([copy[i] for i in items])
    rho = np.mean([rank_correlation(scores[:, n], scores[:, o]) for o, n in zip(orig, new)])
    assert rho > 0.95
    pred = lambda ids: grown.predict(rows["user"], ids)
    err = lambda p: float(np.sqrt(np.mean((p - rows["rating"].to_numpy()) ** 2)))
    assert err(pred(rows["item"].map(copy))) < err(pred(rows["item"])) + 0.05


def test_an_update_with_ratings_it_was_trained_on_moves_predictions_little(data_root):
    """ML-100k u1, dot-bias: a tenth of its own training ratings as the new ones (the measurement
    ``models.incremental`` states: 0.020 RMSE)."""
    train, test = canonical_split("u1", name="ml-100k", data_dir=data_root)
    model, _ = ck.build_model("dot-bias(n_factors=50)", train)
    f = test.frame
    again = model.update(train.with_frame(train.frame.sample(frac=0.1, random_state=0)), train)
    moved = again.predict(f["user"], f["item"]) - model.predict(f["user"], f["item"])
    assert 0 < np.sqrt(np.mean(moved**2)) < KNOWN_DATA_MOVE
    assert ck.evaluate_ratings(again, test)["rmse"] < ck.evaluate_ratings(model, test)["rmse"] + 0.005
    assert again.meta["lineage"][-1]["lr_max"] == pytest.approx(LR_SHARE * model.config.lr_max)


def test_a_new_rating_of_a_known_pair_replaces_the_old_one(trained):
    model, train, _ = trained
    row = train.frame.iloc[[0]]
    step = model.update(train.with_frame(row.assign(rating=5.0 if row["rating"].iloc[0] < 3 else 1.0)), train).meta["lineage"][-1]
    assert step["added"]["replaced"] == 1 and step["mix"]["old"] == len(train.frame) - 1


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda f: f.assign(rating=9.0), r"off the model's scale 1-5 \(the first: 9, row 0\)"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "rated twice"),
        (lambda f: f.assign(rating=np.nan), "not finite"),
    ],
)
def test_new_ratings_it_cannot_use_are_refused_naming_the_problem(trained, change, problem):
    model, train, test = trained
    with pytest.raises(ValueError, match=problem):
        model.update(test.with_frame(change(test.frame.head(5))), train)


def test_old_ratings_that_are_not_what_it_was_trained_on_are_refused(trained):
    model, train, test = trained
    strangers = train.with_frame(train.frame.assign(user=train.frame["user"] + 10_000))
    with pytest.raises(ValueError, match="not the ratings it was trained on"):
        model.update(test, strangers)


def test_without_old_ratings_it_reads_what_the_model_records(tmp_path, trained):
    """A model trained on a file reads it again, and an update's added file joins it."""
    _, train, test = trained
    path = tmp_path / "ratings.csv"
    train.frame.to_csv(path, index=False)
    data = ck.read_ratings(path)
    fitted, _ = ck.build_model("dot-bias(n_factors=4, epochs=2)", DataSource(ratings=path, split="none").split_data(data)[0])
    assert len(recorded_ratings(fitted)) == len(train.frame)
    added = tmp_path / "new.csv"
    test.frame.to_csv(added, index=False)
    updated = fitted.update(ck.read_ratings(added))
    assert updated.meta["lineage"][-1]["added"]["origin"]["ratings"] == str(added.resolve())
    assert len(recorded_ratings(updated)) == len(train.frame) + len(test.frame)


def test_a_model_trained_on_a_frame_needs_its_old_ratings(trained):
    model, _, test = trained
    with pytest.raises(ValueError, match="pass them"):
        model.update(test)


def test_with_items_keeps_items_below_the_threshold_out(trained):
    model, train, _ = trained
    f = train.frame
    one = f[f["item"] == f["item"].iloc[0]].assign(item=10_000)
    few = one.iloc[:2].assign(item=10_001)
    grown = model.with_items(train.with_frame(pd.concat([one, few])), min_ratings=3)
    assert 10_000 in grown.items and 10_001 not in grown.items
    assert model.with_items(train.with_frame(few), min_ratings=3) is model
