"""Item kNN on baseline residuals: its similarities and scores are the module's formulas, computed
here the slow way; fold-in matches training; a catalogue too large for it is skipped with why."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import collabkit as ck
from collabkit.checkpoint import load_model, save_model
from collabkit.models.base import Sizes
from collabkit.models.knn import ItemKNN
from tests.conftest import make_ratings


@pytest.fixture(scope="module")
def fitted():
    data = make_ratings(n_users=50, n_items=30, density=0.4, seed=7)
    model = ItemKNN.from_data(data, shrink=10.0)
    model.fit(data)
    return model, data


def _residual_matrix(model: ItemKNN, data: ck.Ratings) -> np.ndarray:
    """users x items residuals r - mu - b_u - b_i, NaN where unrated."""
    enc = ck.core.loop.encode(model, data)
    u, i, r = enc.users.numpy(), enc.items.numpy(), enc.ratings.double().numpy()
    E = np.full((len(model.users), len(model.items)), np.nan)
    mu = float(model.global_mean)
    E[u, i] = (
        r - mu - model.baseline_user.double().numpy()[u] - model.baseline_item.double().numpy()[i]
    )
    return E


def test_similarities_are_shrunk_positive_pearson_correlations_of_the_residuals(fitted):
    model, data = fitted
    E = _residual_matrix(model, data)
    n = E.shape[1]
    want = np.zeros((n, n))
    for a in range(n):
        for b in range(n):
            both = ~np.isnan(E[:, a]) & ~np.isnan(E[:, b])
            k = both.sum()
            if a == b or k == 0:
                continue
            x, y = E[both, a], E[both, b]
            rho = (x @ y) / np.sqrt((x @ x) * (y @ y))
            want[a, b] = max(0.0, rho * (k - 1) / (k - 1 + 10.0))
    np.testing.assert_allclose(model.similarity.double().numpy(), want, atol=1e-5)


def test_a_score_is_the_baseline_plus_the_similarity_weighted_residuals(fitted):
    model, data = fitted
    E = _residual_matrix(model, data)
    S = model.similarity.double().numpy()
    mu = float(model.global_mean)
    for u, i in [(0, 3), (7, 0), (20, 29), (49, 11)]:
        rated = ~np.isnan(E[u])
        s = S[i, rated]
        nb = (s @ E[u, rated]) / s.sum() if s.sum() > 0 else 0.0
        want = np.clip(
            mu + float(model.baseline_user[u]) + float(model.baseline_item[i]) + nb, 1, 5
        )
        got = model.predict_idx(torch.tensor([u]), torch.tensor([i]))
        assert float(got[0]) == pytest.approx(want, abs=1e-4)
    # one product per user for every item gives the same numbers as pair by pair
    users = torch.tensor([0, 7, 20])
    every = model.score_all_items(users)
    pairs = model.predict_idx(
        users.repeat_interleave(len(model.items)), torch.arange(len(model.items)).repeat(3)
    )
    torch.testing.assert_close(every.reshape(-1), pairs, atol=1e-5, rtol=0)


def test_an_item_without_a_rated_neighbour_scores_its_baseline(fitted):
    model, _ = fitted
    lonely = model.grown(model.users, model.items)
    lonely.similarity[5] = 0.0
    u = torch.arange(len(model.users))
    base = lonely.global_mean + lonely.baseline_user + lonely.baseline_item[5]
    torch.testing.assert_close(lonely.predict_idx(u, torch.full_like(u, 5)), base.clamp(1, 5))


def test_a_folded_in_user_scores_like_the_trained_user_with_the_same_ratings(fitted):
    model, data = fitted
    f = data.frame[data.frame["user"] == data.frame["user"].iloc[0]]
    items = torch.from_numpy(model.items.lookup(f["item"]))
    rep = model.fold_in(items, torch.tensor(f["rating"].to_numpy())).unsqueeze(0)
    u = int(model.users.lookup([f["user"].iloc[0]])[0])
    # the trained b_u is the user sweep's minimiser at convergence: fold-in is that sweep
    torch.testing.assert_close(rep, model.user_repr(torch.tensor([u])), atol=2e-3, rtol=0)
    grown = model.grown(model.users.extended([10_000]), model.items)
    grown.set_reprs("user", torch.tensor([len(model.users)]), rep)
    torch.testing.assert_close(grown.user_repr(torch.tensor([len(model.users)])), rep)
    torch.testing.assert_close(
        grown.user_repr(torch.arange(len(model.users))),
        model.user_repr(torch.arange(len(model.users))),
    )


def test_saved_and_loaded_it_predicts_the_same(fitted, tmp_path):
    model, data = fitted
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    f = data.frame
    np.testing.assert_array_equal(
        model.predict(f["user"], f["item"]), again.predict(f["user"], f["item"])
    )


def test_a_catalogue_too_large_for_dense_similarities_is_skipped_with_the_reason():
    cfg, why = ItemKNN.sized({}, Sizes(n=1_000_000, users=20_000, items=250_000), 1.5e9)
    assert cfg is None and "250000 x 250000" in why and "GB" in why
    cfg, why = ItemKNN.sized({}, Sizes(n=100_000, users=943, items=1682), 1.5e9)
    assert cfg == {} and why == ""


def test_onboarding_asks_the_most_rated_items_first_and_an_ensemble_with_knn_still_onboards(fitted):
    from collabkit.models.ensemble import Ensemble
    from collabkit.recommend.onboard import Questionnaire

    model, data = fitted
    quiz = Questionnaire(model, data)
    most = data.frame["item"].value_counts()
    assert most[quiz.next_item()] == most.max()  # no linear fold-in to measure gains on
    other = ck.build_model("dot-bias(n_factors=4, epochs=5)", data)[0]
    both = Ensemble.of([other, model], [0.5, 0.5])
    quiz = Questionnaire(both, data)
    first = quiz.next_item()
    quiz.answer(first, 4.0)
    assert (
        quiz.next_item() != first
        and quiz.user_repr().shape == both.user_repr(torch.tensor([0])).shape[1:]
    )


def test_similar_items_are_the_largest_similarities_and_reasons_the_nearest_liked_items(fitted):
    from collabkit.interpret.similar import similar_items
    from collabkit.recommend.recommend import recommend

    model, data = fitted
    item = model.items.ids[4]
    near = similar_items(model, item, 3)
    row = model.similarity[4].double().numpy()
    row[4] = -np.inf
    want = np.argsort(-row, kind="stable")[:3]
    assert list(near["item"]) == list(model.items.decode(want))
    np.testing.assert_allclose(near["similarity"], row[want])
    user = data.frame["user"].iloc[0]
    recs = recommend(model, data, [user], n=3)
    mine = data.frame[data.frame["user"] == user]
    liked = mine[mine["rating"] >= mine["rating"].mean() - 1e-6]["item"]
    liked_idx = model.items.lookup(liked)
    for _, rec in recs.iterrows():
        s = model.similarity[int(model.items.lookup([rec["item"]])[0])].numpy()[liked_idx]
        best = liked.iloc[int(np.argmax(s))]  # ties: the first liked in history order (item index)
        assert rec["because"].startswith(f"because you rated {data.items['title'][best]} ")
