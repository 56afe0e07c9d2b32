"""Bias tables with counts and means, and the bias-vs-mean rank comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from collabkit.interpret.biases import bias_table, bias_vs_mean
from collabkit.models.dot import DotProduct, DotProductBias, GlobalMean
from tests.conftest import make_ratings


@pytest.fixture
def data():
    return make_ratings()


@pytest.fixture
def model(data):
    m = DotProductBias.from_data(data, n_factors=3)
    with torch.no_grad():  # item bias = item index / 100: the last item has the highest bias
        m.item_bias.weight[:, 0] = torch.arange(len(m.items), dtype=torch.float32) / 100
    return m


def test_sorted_by_bias_with_titles_counts_and_means(model, data):
    table = bias_table(model, "item", data, data.items)
    assert list(table.columns) == ["item", "title", "bias", "n_ratings", "mean_rating"]
    assert table["item"].tolist() == list(model.items.ids[::-1])
    assert table["bias"].is_monotonic_decreasing
    stats = data.frame.groupby("item")["rating"].agg(["size", "mean"])
    row = table.iloc[0]
    assert row["n_ratings"] == stats.at[row["item"], "size"]
    assert row["mean_rating"] == pytest.approx(stats.at[row["item"], "mean"])
    assert row["title"] == data.items.at[row["item"], "title"]


def test_user_side_and_no_data(model, data):
    users = bias_table(model, "user")
    assert list(users.columns) == ["user", "bias"] and len(users) == len(model.users)


@pytest.mark.parametrize("cls", [GlobalMean, DotProduct])
def test_models_without_biases_are_refused(cls, data):
    with pytest.raises(ValueError, match="no 'biases' capability"):
        bias_table(cls.from_data(data))


def frame(bias, mean, counts=None):
    n = len(bias)
    counts = [50] * n if counts is None else counts
    return pd.DataFrame({"item": range(n), "bias": bias, "n_ratings": counts, "mean_rating": mean})


def test_rank_correlation_extremes():
    assert bias_vs_mean(frame([3, 2, 1, 0], [4.5, 4, 3, 2])).spearman == pytest.approx(1)
    assert bias_vs_mean(frame([3, 2, 1, 0], [2, 3, 4, 4.5])).spearman == pytest.approx(-1)


def test_spearman_matches_numpy_and_disagreements_are_largest_gaps():
    rng = np.random.default_rng(0)
    bias, mean = rng.normal(size=40), rng.normal(size=40)
    result = bias_vs_mean(frame(bias, mean), n=5)
    rb, rm = (-bias).argsort().argsort(), (-mean).argsort().argsort()  # no ties: plain ranks
    assert result.spearman == pytest.approx(np.corrcoef(rb, rm)[0, 1])
    gaps = np.abs(rm - rb)
    assert (
        sorted(result.disagreements["rank_gap"].abs(), reverse=True)
        == sorted(gaps, reverse=True)[:5]
    )
    top = result.disagreements.iloc[0]
    assert top["rank_gap"] == top["mean_rank"] - top["bias_rank"]


def test_min_ratings_filters_noisy_means():
    t = frame([3, 2, 1, 0, 9], [4.5, 4, 3, 2, 1], counts=[50, 50, 50, 50, 1])
    result = bias_vs_mean(t, min_ratings=20)
    assert result.n_items == 4 and result.spearman == pytest.approx(1)
    with pytest.raises(ValueError, match="need 3"):
        bias_vs_mean(t, min_ratings=60)
    with pytest.raises(ValueError, match="ratings="):
        bias_vs_mean(t.drop(columns="mean_rating"))
