"""Hybrid: the model contract, feature encoding, save/load, and scoring items/users from metadata."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.models.hybrid import FeatureEncoder, Hybrid, score_new_items, score_new_users
from tests.conftest import make_ratings

GENRES = ("Action", "Comedy", "Drama")


def tabular(n_users: int = 90, n_items: int = 60, seed: int = 0) -> ck.Ratings:
    """Ratings driven by metadata: a user's group likes some genres, older items rate higher."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["x", "y", "z"], n_users)
    age = rng.integers(18, 70, n_users).astype(float)
    genres = [
        "|".join(sorted(set(rng.choice(GENRES, rng.integers(1, 3), replace=False))))
        for _ in range(n_items)
    ]
    year = rng.integers(1950, 2000, n_items)
    like = {
        "x": {"Action": 1.5, "Comedy": -1.0, "Drama": 0.0},
        "y": {"Action": -1.0, "Comedy": 1.5, "Drama": 0.0},
        "z": {"Action": 0.0, "Comedy": 0.0, "Drama": 1.5},
    }
    u, i = np.nonzero(rng.random((n_users, n_items)) < 0.35)
    affinity = np.array(
        [np.mean([like[group[a]][g] for g in genres[b].split("|")]) for a, b in zip(u, i)]
    )
    score = 3 + affinity - (year[i] - 1975) / 25 + rng.normal(0, 0.3, len(u))
    frame = pd.DataFrame({"user": u + 1, "item": i + 101, "rating": np.clip(np.round(score), 1, 5)})
    users = pd.DataFrame(
        {"group": group, "age": age, "zip": [f"{k:05d}" for k in range(n_users)]},
        index=pd.Index(np.arange(n_users) + 1, name="user"),
    )
    items = pd.DataFrame(
        {"title": [f"Film {k}" for k in range(n_items)], "genres": genres, "year": year},
        index=pd.Index(np.arange(n_items) + 101, name="item"),
    )
    return ck.Ratings(frame, items=items, users=users, scale=(1.0, 5.0), name="tabular")


def fit(model: ck.CollabModel, data: ck.Ratings, epochs: int = 15) -> ck.CollabModel:
    ck.fit_one_cycle(model, data, epochs=epochs, lr_max=1e-2, wd=0.01, bs=32, progress=False)
    return model


@pytest.fixture(scope="module")
def data() -> ck.Ratings:
    return tabular()


@pytest.fixture(scope="module")
def model(data) -> Hybrid:
    return fit(Hybrid.from_data(data, n_factors=8, seed=0), data, epochs=3)


def test_automatic_features_skip_id_like_columns(model):
    cfg = model.config
    assert [(s["column"], s["kind"]) for s in cfg.user_features] == [
        ("group", "categorical"),
        ("age", "numeric"),
    ]
    assert [(s["column"], s["kind"]) for s in cfg.item_features] == [
        ("genres", "multi"),
        ("year", "numeric"),
    ]
    assert cfg.item_features[0]["values"] == list(GENRES) and cfg.item_features[0]["width"] == 2


def test_explicit_features_and_clear_errors(data):
    m = Hybrid.from_data(data, user_features=["zip"], item_features=[])
    assert [s["column"] for s in m.config.user_features] == ["zip"] and m.config.item_features == ()
    with pytest.raises(
        ValueError,
        match=r"users table has no column\(s\) \['height'\]; it has \['group', 'age', 'zip'\]",
    ):
        Hybrid.from_data(data, user_features=["height"])
    with pytest.raises(ValueError, match="no users table"):
        Hybrid.from_data(make_ratings(), user_features=["age"])
    plain = Hybrid.from_data(make_ratings())  # no metadata: no features, a DotProductBias
    assert plain.config.user_features == () and plain.config.item_features == ()


def test_multi_valued_features_average_their_values(model):
    enc: FeatureEncoder = model.item_meta
    table = pd.DataFrame(
        {
            "genres": ["Action|Comedy", "Action", "Comedy", None],
            "year": [1975.0, 1975.0, 1975.0, np.nan],
        }
    )
    out = enc(*enc.encode(table)).detach()
    torch.testing.assert_close(out[0], (out[1] + out[2]) / 2)
    torch.testing.assert_close(
        out[3], torch.zeros_like(out[3])
    )  # missing genre and year contribute nothing


def test_a_whole_catalogues_metadata_is_encoded_in_chunks_with_the_same_result(model, monkeypatch):
    from collabkit.models import hybrid

    every = torch.arange(len(model.items))
    whole = model.item_meta.rows(every)
    monkeypatch.setattr(hybrid, "ROWS_AT_ONCE", 3)  # many chunks, the last one short
    sizes, forward = [], model.item_meta.forward
    monkeypatch.setattr(model.item_meta, "forward", lambda t, x: sizes.append(len(x)) or forward(t, x))
    assert torch.equal(model.item_meta.rows(every), whole)
    assert max(sizes) == 3 and sum(sizes) == len(every)
    assert model.item_meta.rows(every[:0]).shape == (0, whole.shape[1])


def test_unknown_values_warn_and_contribute_nothing(model):
    known = pd.DataFrame({"genres": ["Drama"], "year": [1980]}, index=[900])
    odd = pd.DataFrame({"genres": ["Drama|Western"], "year": [1980]}, index=[900])
    with pytest.warns(
        UserWarning, match=r"genres: values unknown to the model are ignored: \['Western'\]"
    ):
        with_odd = model.new_item_repr(odd)
    torch.testing.assert_close(with_odd, model.new_item_repr(known))
    with pytest.raises(ValueError, match=r"metadata lacks column\(s\) \['year'\]"):
        model.new_item_repr(pd.DataFrame({"genres": ["Drama"]}))


def test_contract_batch_equals_loop_and_unknown_ids(model, data):
    f = data.frame.head(15)
    batch = model.predict(f["user"], f["item"])
    loop = np.array([model.predict([u], [i])[0] for u, i in zip(f["user"], f["item"])])
    np.testing.assert_allclose(batch, loop, rtol=1e-5, atol=1e-6)
    out = model.predict(["nobody", 10**9], [101, 101])
    assert np.isfinite(out).all() and out[0] == out[1]
    full = model.score_all_items(torch.tensor([0, 3, 4]))
    pairs = model.predict_idx(
        torch.tensor([0, 3, 4]).repeat_interleave(len(model.items)),
        torch.arange(len(model.items)).repeat(3),
    )
    torch.testing.assert_close(full, pairs.view(3, -1), rtol=1e-5, atol=1e-5)


def test_id_dropout_only_while_training(model, data):
    f = data.frame.head(50)
    u, i = (
        torch.from_numpy(model.users.lookup(f["user"])),
        torch.from_numpy(model.items.lookup(f["item"])),
    )
    model.train()
    with torch.no_grad():
        same = [model(u, i) for _ in range(2)]  # no gradients: prediction, never dropped
    noisy = [model(u, i).detach() for _ in range(2)]
    model.eval()
    torch.testing.assert_close(same[0], same[1])
    assert not torch.equal(noisy[0], noisy[1])


def test_predictions_stay_inside_y_range(data):
    m = Hybrid.from_data(data, n_factors=4)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 50)
    out = m.predict(data.frame["user"], data.frame["item"])
    low, high = m.config.y_range
    assert (out >= low).all() and (out <= high).all()


def test_save_load_round_trip_scores_new_items_identically(model, data, tmp_path):
    save_model(model, tmp_path / "m", items=data.items)
    again = load_model(tmp_path / "m")
    assert isinstance(again, Hybrid) and again.config == model.config
    f = data.frame
    np.testing.assert_array_equal(
        model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"])
    )
    new = pd.DataFrame(
        {"genres": ["Comedy|Drama"], "year": [1990]}, index=pd.Index(["brand-new"], name="item")
    )
    pd.testing.assert_frame_equal(score_new_items(model, new), score_new_items(again, new))


def test_cold_items_and_users_are_scored_from_metadata(data):
    """Held-out items (all their ratings) are predicted far better than by the global mean."""
    held = data.items.index[::4]
    cold = data.frame["item"].isin(held).to_numpy()
    train, test = data.subset(~cold), data.subset(cold)
    m = fit(Hybrid.from_data(train, n_factors=8, seed=0, id_dropout=0.2), train, epochs=25)
    scores = score_new_items(m, data.items.loc[held], np.unique(test.frame["user"]))
    pred = (
        scores.stack()
        .reindex(pd.MultiIndex.from_arrays([test.frame["user"], test.frame["item"]]))
        .to_numpy()
    )
    y = test.frame["rating"].to_numpy()
    rmse = np.sqrt(np.mean((pred - y) ** 2))
    baseline = np.sqrt(np.mean((train.frame["rating"].mean() - y) ** 2))
    assert rmse < 0.8 * baseline
    known = list(m.items.ids[:2])
    by_user = score_new_users(m, data.users.loc[[1, 2]], known)
    assert by_user.shape == (2, 2) and list(by_user.columns) == known


def test_scoring_from_metadata_needs_a_hybrid(data):
    with pytest.raises(TypeError, match="needs a hybrid model"):
        score_new_items(ck.DotProductBias.from_data(data), data.items)


def test_hybrid_on_movielens_metadata(data_root):
    data = ck.load_movielens("100k", data_dir=data_root, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = Hybrid.from_data(data, n_factors=8)
    assert [s["column"] for s in m.config.user_features] == ["age", "gender", "occupation"]
    assert [s["column"] for s in m.config.item_features] == ["year", "genres"]
    assert m.meta["users_without_metadata"] == 0 and m.meta["items_without_metadata"] == 0
    assert len(m.config.item_features[1]["values"]) == 19
