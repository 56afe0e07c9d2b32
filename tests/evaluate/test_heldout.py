"""Strong generalisation: held-out users folded in and ranked over the whole catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from collabkit.data.implicit import to_implicit
from collabkit.data.interactions import Ratings
from collabkit.data.split import heldout_users
from collabkit.evaluate.compare import compare_heldout
from collabkit.evaluate.heldout import heldout_metrics, heldout_outcome
from collabkit.evaluate.scores import Outcome
from collabkit.train.build import build_model
from tests.conftest import make_ratings


def test_recall_is_normalised_by_min_k_and_relevant_and_ndcg_at_100():
    lists = np.tile(np.arange(100), (2, 1))  # both users get items 0..99 in order
    # user 0: relevant 5, 30 and 120 (never listed); user 1: relevant 0..24 (more than 20)
    rel = np.r_[[5, 30, 120], np.arange(25)]
    held = pd.DataFrame({"user": [0, 1], "item_count": 0, "error": np.nan})
    result = Outcome(np.array(["a", "b"]), np.array([4, 9]), lists, (np.array([0, 3, 28]), rel), np.zeros(100), held, False)
    got = {m: v.num[0] for m, v in heldout_metrics(result).items()}
    # user 0: 1 hit in the top 20, of min(20, 3) = 3; 2 in the top 50; user 1: 20 of min(20, 25)
    assert got["recall@20"].tolist() == pytest.approx([1 / 3, 1.0])
    assert got["recall@50"].tolist() == pytest.approx([2 / 3, 1.0])
    ideal = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert got["ndcg@100"][0] == pytest.approx((1 / np.log2(7) + 1 / np.log2(32)) / ideal)
    assert got["ndcg@100"][1] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def implicit():
    return to_implicit(make_ratings(n_users=120, n_items=60, density=0.3, seed=4), 4.0)


def two_tastes(n_users: int = 80, n_items: int = 40, seed: int = 0) -> Ratings:
    """Even users interact only with even items, odd users with odd ones (60% of them each)."""
    rng = np.random.default_rng(seed)
    rows = [(u, i, 1.0) for u in range(n_users) for i in range(u % 2, n_items, 2) if rng.random() < 0.6]
    return Ratings(pd.DataFrame(rows, columns=["user", "item", "rating"]), name="two tastes")


def test_heldout_users_are_folded_in_and_never_shown_their_answers(implicit):
    train, fold_in, test = heldout_users(implicit, n_users=20, seed=1)
    model, _ = build_model("ease", train)
    result = heldout_outcome(model, train, fold_in, test)
    assert len(result.users) == 20 and not set(result.users) & set(train.frame["user"])
    answers = fold_in.frame.groupby("user")["item"].apply(set)
    for user, row in zip(result.users, result.lists):
        shown = set(model.items.decode(row[row >= 0]))
        assert not shown & answers.get(user, set())  # fold-in items are excluded
    assert result.n_unknown_answers == int((~fold_in.frame["item"].isin(train.frame["item"])).sum())
    values = {m: v.value() for m, v in heldout_metrics(result).items()}
    assert all(0 <= v <= 1 for v in values.values())
    mean, _ = build_model("mean", train)
    with pytest.raises(ValueError, match="cannot fold in"):
        heldout_outcome(mean, train, fold_in, test)


def test_compare_heldout_rows_intervals_and_paired_test(implicit):
    result = compare_heldout(["most-popular", "ease"], implicit, n_users=30, relevant_threshold=None, baseline="most-popular", n_resamples=200)
    assert result.metrics == ["recall@20", "recall@50", "ndcg@100"]
    ease = result.rows[1]
    assert ease["n_heldout_users"] == 30
    for m in result.metrics:
        low, high = ease["intervals"][m]
        assert low <= ease[m] <= high
    assert set(ease["vs_baseline"]) == set(result.metrics)


def test_fold_in_finds_a_held_out_users_taste():
    """Two tastes: a folded-in user's held-out items are all of their taste, so every kind that
    folds in ranks them above the other taste's; most-popular, the same list for all, cannot."""
    train, fold_in, test = heldout_users(two_tastes(), n_users=16, seed=2)
    scores = {}
    for spec in ("most-popular", "ease(reg=10)", "als(n_factors=4, reg=1)"):
        model, _ = build_model(spec, train, seed=0)
        scores[spec] = heldout_metrics(heldout_outcome(model, train, fold_in, test))["recall@20"].value()
    assert scores["ease(reg=10)"] > 0.9 and scores["als(n_factors=4, reg=1)"] > 0.9
    assert scores["most-popular"] < 0.75


def test_a_rating_model_folds_in_too():
    data = make_ratings(n_users=100, n_items=40, density=0.4, seed=6)
    result = compare_heldout(["dot-bias(n_factors=4, epochs=5, lr_max=0.05)", "bias(epochs=5, lr_max=0.05)"], data, n_users=20, n_resamples=100)
    for row in result.rows:
        assert row["n_heldout_users"] == 20 and 0 <= row["ndcg@100"] <= 1
