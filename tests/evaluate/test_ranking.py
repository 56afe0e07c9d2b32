"""evaluate_ranking against hand-computed top-k lists: seen items excluded, nothing dropped."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from collabkit.data.interactions import Ratings
from collabkit.evaluate.ranking import evaluate_ranking, item_popularity, relevant_items
from collabkit.models.dot import BiasOnly

ITEM_BIAS = {"A": 0.6, "B": 0.5, "C": 0.4, "D": 0.3, "E": 0.2, "F": 0.1}  # ranks A > B > ... > F


def ratings(rows: list[tuple[int, str, float]], name: str) -> Ratings:
    return Ratings(
        pd.DataFrame(rows, columns=["user", "item", "rating"]), scale=(1.0, 5.0), name=name
    )


@pytest.fixture
def case() -> tuple[BiasOnly, Ratings, Ratings]:
    """A bias-only model whose ranking is A..F for everyone, a training set and a test set."""
    train = ratings(
        [(1, "A", 4), (1, "B", 3), (2, "C", 5), (3, "A", 2), (4, "D", 3), (4, "E", 3), (4, "F", 3)],
        "train",
    )
    test = ratings(
        [
            (1, "D", 5), (1, "E", 2),  # user 1: D relevant
            (2, "A", 4), (2, "F", 5), (2, "G", 5),  # user 2: A, F and G (unknown item) relevant
            (3, "B", 3),  # user 3: nothing relevant -> not averaged
            (9, "A", 5),  # user 9: unknown to the model -> ranked by the fallback
        ],
        "test",
    )  # fmt: skip
    model = BiasOnly.from_data(train)
    with torch.no_grad():
        model.item_bias.weight[:, 0] = torch.tensor([ITEM_BIAS[i] for i in model.items.ids])
        model.user_bias.weight.zero_()
    return model, train, test


def ndcg(hits: list[bool], n_relevant: int) -> float:
    dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
    return dcg / sum(1 / math.log2(r + 2) for r in range(min(n_relevant, len(hits))))


def test_matches_hand_computed_lists(case):
    model, train, test = case
    got = evaluate_ranking(model, train, test, k=2, relevant_threshold=4)
    # top-2 among unrated items: user 1 -> C, D; user 2 -> A, B; user 9 (rated nothing) -> A, B
    per_user = {
        1: {"hits": [False, True], "n_rel": 1},
        2: {"hits": [True, False], "n_rel": 3},
        9: {"hits": [True, False], "n_rel": 1},
    }
    want = {
        "precision@2": sum(sum(u["hits"]) / 2 for u in per_user.values()) / 3,
        "recall@2": sum(sum(u["hits"]) / u["n_rel"] for u in per_user.values()) / 3,
        "ndcg@2": sum(ndcg(u["hits"], u["n_rel"]) for u in per_user.values()) / 3,
        "hit_rate@2": 1.0,
        "mrr@2": (1 / 2 + 1 + 1) / 3,
        "coverage@2": 4 / 6,  # A, B, C, D recommended out of 6 items
    }
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    assert got["n_users"] == 3 and got["n_unknown_users"] == 1


def test_training_items_are_never_recommended(case):
    model, train, test = case
    got = evaluate_ranking(model, train, test.with_frame(test.frame[test.frame.user == 1]), k=6)
    # user 1 rated A and B in training: 4 candidates, so precision@6 = 1 hit / 6
    assert got["precision@6"] == pytest.approx(1 / 6) and got["recall@6"] == 1.0


def test_threshold_none_makes_every_held_out_item_relevant(case):
    model, train, test = case
    users, (indptr, _) = relevant_items(model, test, None)
    assert len(users) == 4 and indptr[-1] == len(test)
    assert evaluate_ranking(model, train, test, k=2, relevant_threshold=None)["n_users"] == 4


def test_unknown_relevant_items_are_misses_not_dropped(case):
    model, _, test = case
    _, (_, items) = relevant_items(model, test, 4)
    assert (items >= len(model.items)).sum() == 1  # G: past the catalogue, can only be missed


def test_item_popularity_counts_training_ratings(case):
    model, train, _ = case
    assert item_popularity(model, train).tolist() == [2, 1, 1, 1, 1, 1]


def test_nothing_relevant_is_an_error(case):
    model, train, test = case
    with pytest.raises(ValueError, match="nothing is relevant"):
        evaluate_ranking(model, train, test, relevant_threshold=6)
