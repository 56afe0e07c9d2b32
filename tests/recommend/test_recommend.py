"""recommend(): never a seen item, deterministic, batch == loop, explained, unknown users handled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import collabkit as ck
from collabkit.models.base import get_model_class
from collabkit.recommend import (
    explain_items,
    rated_csr,
    recommend,
    recommend_new_users,
    seen_csr,
    top_n,
)
from collabkit.recommend.recommend import FALLBACK_REASON
from tests.conftest import make_ratings


def trained(
    ratings: ck.Ratings, kind: str = "dot-bias", epochs: int = 3, **config
) -> ck.CollabModel:
    model = get_model_class(kind).from_data(ratings, seed=0, **config)
    ck.fit_one_cycle(model, ratings, epochs=epochs, lr_max=1e-2, wd=0.01, bs=32, progress=False)
    return model


@pytest.fixture(scope="module")
def setup():
    data = make_ratings()
    return data, trained(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_users=st.integers(2, 12),
    n_items=st.integers(2, 15),
    density=st.floats(0.05, 0.95),
    n=st.integers(1, 20),
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(["dot-bias", "dot", "nn", "hybrid"]),
    restrict=st.booleans(),
)
def test_never_recommends_a_rated_item(n_users, n_items, density, n, seed, kind, restrict):
    data = make_ratings(n_users, n_items, density, seed=seed)
    model = get_model_class(kind).from_data(data, seed=seed)  # random weights are enough
    rng = np.random.default_rng(seed)
    items = data.frame["item"].unique()
    candidates = (
        rng.choice(items, size=max(1, len(items) // 2), replace=False) if restrict else None
    )
    recs = recommend(model, data, None, n, candidates=candidates)
    rated = set(zip(data.frame["user"], data.frame["item"]))
    assert not {(u, i) for u, i in zip(recs["user"], recs["item"])} & rated
    if candidates is not None:
        assert set(recs["item"]) <= set(candidates)
    per_user = recs.groupby("user")
    assert (per_user.size() <= n).all()
    assert all((g["rank"].to_numpy() == np.arange(1, len(g) + 1)).all() for _, g in per_user)
    assert all((np.diff(g["score"].to_numpy()) <= 0).all() for _, g in per_user)
    pd.testing.assert_frame_equal(recs, recommend(model, data, None, n, candidates=candidates))


def test_lists_have_every_unrated_item_until_n(setup):
    data, model = setup
    recs = recommend(model, data, None, n=1000, explain=False)
    unrated = len(model.items) - data.frame.groupby("user").size()
    assert (recs.groupby("user").size() == unrated.reindex(recs["user"].unique())).all()


def test_batch_equals_one_user_at_a_time(setup):
    data, model = setup
    users = list(model.users.ids[:7])
    batch = recommend(model, data, users, n=5)
    loop = pd.concat([recommend(model, data, u, n=5) for u in users], ignore_index=True)
    pd.testing.assert_frame_equal(batch, loop)


def test_checkerboard_users_get_their_own_group():
    """Two taste groups: after training, every recommendation comes from the user's own group."""
    u, i = np.meshgrid(np.arange(30), np.arange(30), indexing="ij")
    u, i = u.ravel(), i.ravel()
    keep = np.random.default_rng(0).random(len(u)) < 0.5
    rating = np.where(u % 2 == i % 2, 5.0, 1.0)
    data = ck.Ratings(
        pd.DataFrame({"user": u[keep], "item": i[keep], "rating": rating[keep]}), scale=(1, 5)
    )
    model = ck.DotProductBias.from_data(data, n_factors=4, seed=0)
    ck.fit_one_cycle(model, data, epochs=40, lr_max=3e-2, wd=0.0, bs=64, progress=False)
    recs = recommend(model, data, None, n=3, explain=False)
    assert ((recs["user"] % 2) == (recs["item"] % 2)).mean() > 0.95


def test_unknown_users_error_or_fallback(setup):
    data, model = setup
    with pytest.raises(ck.UnknownIdError, match="unknown user id.*'nobody'.*fallback"):
        recommend(model, data, ["nobody", 1])
    prior = model.user_prior(data)
    recs = recommend(model, data, ["nobody", "stranger", 1], n=4, unknown="fallback", prior=prior)
    a, b = (recs[recs["user"] == u].reset_index(drop=True) for u in ("nobody", "stranger"))
    pd.testing.assert_frame_equal(
        a.drop(columns="user"), b.drop(columns="user")
    )  # same average-taste list
    assert (a["because"] == FALLBACK_REASON).all()
    top = model.predict(np.repeat(prior.average_user, len(model.items)), model.items.ids)
    assert a["item"].tolist() == list(model.items.ids[np.argsort(-top, kind="stable")[:4]])
    assert recs[recs["user"] == 1]["because"].str.startswith("because you rated").all()


def test_exclude_seen_needs_the_ratings(setup):
    _, model = setup
    with pytest.raises(ValueError, match="exclude_seen needs data"):
        recommend(model, None, [1])
    recs = recommend(model, None, [1], n=len(model.items), exclude_seen=False, explain=False)
    assert len(recs) == len(model.items)


def test_titles_come_from_metadata(setup):
    data, model = setup
    recs = recommend(model, data, [1], n=3)
    assert recs["title"].tolist() == data.titles(recs["item"].tolist())


def test_because_names_the_nearest_liked_items(setup):
    data, model = setup
    recs, _ = top_n(model, np.arange(5), 4, seen=seen_csr(model, data))
    history = rated_csr(model, data)
    because = explain_items(model, recs, history, np.arange(5))
    vectors = torch.nn.functional.normalize(model.item_factors.weight.detach(), dim=1)
    indptr, items, ratings = history
    for u in range(5):
        own, r = items[indptr[u] : indptr[u + 1]], ratings[indptr[u] : indptr[u + 1]]
        liked = own[(r >= r.mean() - 1e-6) & (r >= model.meta["global_mean"] - 1e-6)]
        for k, item in enumerate(recs[u]):
            sims = (vectors[liked] @ vectors[item]).numpy()
            expected = liked[np.argsort(-sims, kind="stable")[:2]]
            assert because[u, k, : len(expected)].tolist() == expected.tolist()


def test_a_low_rating_is_never_the_reason_even_when_it_is_the_users_mean(setup):
    """One 1-star rating is its user's mean; "because you rated X highly" would be false. The
    item's own bias is the reason then."""
    _, model = setup
    recs = recommend_new_users(model, {101: 1.0}, n=5)
    assert not recs["because"].str.contains("highly").any(), recs["because"].tolist()
    assert recs["because"].str.startswith("rated above average overall").all(), recs["because"].tolist()


def test_new_users_get_fold_in_recommendations(setup):
    _, model = setup
    answers = {101: 5.0, 102: 1.0, 103: 4.0}
    recs = recommend_new_users(model, answers, n=5)
    assert len(recs) == 5 and not set(recs["item"]) & set(answers)
    assert (recs["user"] == "new").all() and recs["because"].str.contains("highly").all()
    empty = recommend_new_users(model, {}, n=5)
    assert (empty["because"] == FALLBACK_REASON).all()
    many = recommend_new_users(
        model,
        pd.DataFrame({"user": ["a", "a", "b"], "item": [101, 102, 101], "rating": [5, 1, 2]}),
        n=3,
    )
    assert set(many["user"]) == {"a", "b"}
    with pytest.raises(ck.UnknownIdError, match="unknown item"):
        recommend_new_users(model, {999999: 4.0})


def test_a_model_with_a_distribution_gives_the_chance_of_loving_each_pick(setup):
    from collabkit.recommend.recommend import love_at

    data, dot = setup
    assert love_at(dot) is None and "p_love" not in recommend(dot, data, [1], n=3).columns
    ordinal = get_model_class("ordinal").from_data(data, seed=0, n_factors=4, epochs=4)
    ordinal.fit(data, progress=False)
    assert love_at(ordinal) == 4.0  # the top quarter of 1-5 stars
    known = recommend(ordinal, data, [1, 2], n=5)
    p = ordinal.predict_proba(known["user"], known["item"])  # (10, 5) over levels 1..5
    np.testing.assert_allclose(known["p_love"], p[:, 3:].sum(1), atol=1e-5)  # P(4) + P(5)
    fallback = recommend(ordinal, data, ["nobody"], n=3, unknown="fallback")
    answers = {data.frame["item"].iloc[0]: 5.0, data.frame["item"].iloc[1]: 1.0}
    new = recommend_new_users(ordinal, answers, n=3)
    for frame in (fallback, new):
        assert frame["p_love"].between(0, 1).all() and frame["p_love"].notna().all()


def test_non_dot_models_rank_but_have_no_fallback(setup):
    data, _ = setup
    model = trained(data, "nn", epochs=1)
    assert len(recommend(model, data, [1, 2], n=3)) == 6
    with pytest.raises(TypeError, match="no 'fold-in' capability"):
        recommend(model, data, ["nobody"], unknown="fallback")


def test_recommend_on_movielens(data_root):
    data = ck.load_movielens("100k", data_dir=data_root, progress=False)
    model = trained(data.subset(np.arange(len(data)) % 5 != 0), epochs=1, n_factors=8)
    recs = recommend(model, data, [1, 42], n=10)
    rated = set(zip(data.frame["user"], data.frame["item"]))
    assert len(recs) == 20 and not {(u, i) for u, i in zip(recs["user"], recs["item"])} & rated
    assert recs["title"].str.contains(r"\(\d{4}\)").all()



@pytest.mark.parametrize("n", [0, -1])
def test_n_below_one_is_refused(setup, n):
    data, model = setup
    with pytest.raises(ValueError, match="n .* must be at least 1"):
        recommend(model, data, None, n=n)
    with pytest.raises(ValueError, match="n .* must be at least 1"):
        recommend_new_users(model, {model.items.ids[0]: 5.0}, n=n)


def test_huge_n_is_capped_at_the_catalogue_without_allocating_for_it(setup):
    import resource

    data, model = setup
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    recs = recommend(model, data, model.users.ids[:3], n=10**8, explain=False)
    assert (recs.groupby("user").size() <= len(model.items)).all()
    assert len(recommend_new_users(model, {model.items.ids[0]: 5.0}, n=10**8)) == len(model.items) - 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: < 200 MB


def test_a_model_of_biases_alone_gives_each_item_its_bias_as_the_reason(setup):
    data = setup[0]
    model = ck.build_model("baseline", data)[0]
    recs = ck.recommend(model, data, None, n=2)
    b = model.biases("item").double().numpy()[model.items.lookup(recs["item"])]
    best = recs["rank"] == 1
    assert (b[best] >= b[~best]).all()  # its ranking is the item's bias ...
    assert recs["because"].tolist() == [  # ... so that is its reason
        f"rated {'above' if x >= 0 else 'below'} average overall (item bias {x:+.2f})" for x in b
    ]
