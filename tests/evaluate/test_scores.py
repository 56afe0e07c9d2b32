"""A model's outcome kept per user gives the same numbers as the whole-test-set functions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from collabkit.data.split import random_split
from collabkit.evaluate.ranking import evaluate_ranking
from collabkit.evaluate.rating import evaluate_ratings
from collabkit.evaluate.scores import outcome
from collabkit.train.build import build_model
from tests.conftest import make_ratings


@pytest.fixture(scope="module")
def trained():
    data = make_ratings(n_users=70, n_items=40, density=0.35, seed=5)
    train, test = random_split(data, 0.25, seed=3)
    # a user and an item the model never saw: scored by the fallback, never dropped
    extra = pd.DataFrame({"user": [999, 999, 1], "item": [101, 102, 555], "rating": [5.0, 2.0, 4.0], "timestamp": 0})
    test = test.with_frame(pd.concat([test.frame, extra]))
    model, _ = build_model("dot-bias(n_factors=4, epochs=5, lr_max=0.05)", train)
    return model, train, test


def test_per_user_metrics_average_to_the_whole_test_set(trained):
    model, train, test = trained
    result = outcome(model, train, test, k=5)
    values = {m: v.value() for m, v in result.metrics().items()}
    ratings = evaluate_ratings(model, test)
    assert values["rmse"] == pytest.approx(ratings["rmse"]) and values["mae"] == pytest.approx(ratings["mae"])
    ranking = evaluate_ranking(model, train, test, k=5)
    for name in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "novelty", "arp", "aplt"):
        assert values[f"{name}@5"] == pytest.approx(ranking[f"{name}@5"]), name
    whole = result.lists_shown()
    assert whole["coverage@5"] == pytest.approx(ranking["coverage@5"]) and whole["gini@5"] == pytest.approx(ranking["gini@5"])
    assert result.n_unknown_users == ranking["n_unknown_users"] == 1
    assert result.metrics()["ndcg@5"].n_users == ranking["n_users"]
    assert 999 in result.users and result.user_counts[list(result.users).index(999)] == 0


def test_ratings_only_and_ranking_only(trained):
    model, train, test = trained
    only = outcome(model, train, test, k=None)
    assert set(only.metrics()) == {"rmse", "mae"} and only.lists_shown() == {}
    popular, _ = build_model("most-popular", train, threshold=4.0)
    ranked = outcome(popular, train, test, k=5)
    assert "rmse" not in ranked.metrics() and np.isnan(ranked.held["error"]).all()
    with pytest.raises(ValueError, match="nothing is relevant"):
        outcome(model, train, test.with_frame(test.frame.assign(rating=1.0)), k=5)
